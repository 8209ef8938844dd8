//! The shape `foresight-serve` promises (README, crate layout): gRPC codes are chosen in one
//! place, the library carries no `anyhow`, and its modules depend on each other without a
//! cycle. Read from the sources, so a change that breaks the shape fails here.

use std::collections::{BTreeMap, BTreeSet};

use crate::util::root;

/// Each module of the serve library (file stem) and its source.
fn modules() -> BTreeMap<String, String> {
    let dir = root().join("crates/serve/src");
    std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .map(|p| (p.file_stem().unwrap().to_string_lossy().into_owned(), std::fs::read_to_string(&p).unwrap()))
        .filter(|(name, _)| name != "lib" && name != "main")
        .collect()
}

/// The crate modules `source` names, as `crate::<module>` or inside `crate::{<module>, …}`.
fn dependencies(source: &str, modules: &BTreeSet<&str>) -> BTreeSet<String> {
    let ident = |text: &str| -> String { text.trim_start().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect() };
    let mut names = BTreeSet::new();
    for (at, _) in source.match_indices("crate::") {
        let rest = &source[at + 7..];
        match rest.strip_prefix('{') {
            // A group: each item's first segment (nested groups are not used in this crate).
            Some(group) => names.extend(group.split('}').next().unwrap_or_default().split(',').map(ident)),
            None => {
                names.insert(ident(rest));
            }
        }
    }
    names.into_iter().filter(|n| modules.contains(n.as_str())).collect()
}

/// A cycle in `graph`, as the path that closes it.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(node: &str, graph: &BTreeMap<String, BTreeSet<String>>, path: &mut Vec<String>, done: &mut BTreeSet<String>) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            let mut found = path[start..].to_vec();
            found.push(node.to_string());
            return Some(found);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(found) = visit(next, graph, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

/// Whether `line` names `tonic::Status`'s constructors (`Status::internal`), not another type
/// ending in `Status` (`AckStatus::Stored`).
fn builds_a_status(line: &str) -> bool {
    line.match_indices("Status::").any(|(at, _)| !line[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_'))
}

#[test]
fn grpc_codes_are_chosen_only_in_the_error_module() {
    assert!(builds_a_status("Err(Status::internal(e))") && builds_a_status("tonic::Status::not_found(x)") && !builds_a_status("AckStatus::Stored"));
    let offenders: Vec<String> = modules()
        .into_iter()
        .filter(|(name, _)| name != "error")
        .flat_map(|(name, source)| {
            source.lines().enumerate().filter(|(_, l)| builds_a_status(l)).map(|(i, l)| format!("{name}.rs:{}: {}", i + 1, l.trim())).collect::<Vec<_>>()
        })
        .collect();
    assert!(offenders.is_empty(), "map errors through ServeError instead:\n{}", offenders.join("\n"));
    assert!(modules()["error"].contains("impl From<ServeError> for Status"));
}

#[test]
fn the_serve_crate_does_not_depend_on_anyhow() {
    let manifest = std::fs::read_to_string(root().join("crates/serve/Cargo.toml")).unwrap();
    let manifest: toml::Table = manifest.parse().unwrap();
    for section in ["dependencies", "dev-dependencies", "build-dependencies"] {
        let deps = manifest.get(section).and_then(|d| d.as_table()).cloned().unwrap_or_default();
        assert!(!deps.contains_key("anyhow"), "crates/serve/Cargo.toml [{section}] lists anyhow");
    }
    for (name, source) in modules() {
        assert!(!source.contains("anyhow"), "{name}.rs uses anyhow");
    }
}

#[test]
fn serve_modules_depend_on_each_other_without_a_cycle() {
    let modules = modules();
    let names: BTreeSet<&str> = modules.keys().map(String::as_str).collect();
    let graph: BTreeMap<String, BTreeSet<String>> =
        modules.iter().map(|(name, source)| (name.clone(), dependencies(source, &names).into_iter().filter(|d| d != name).collect())).collect();
    assert!(cycle(&graph).is_none(), "import cycle: {}", cycle(&graph).unwrap_or_default().join(" → "));
    // The reader sees grouped imports, and the checker finds a cycle when there is one.
    let names = BTreeSet::from(["engine", "series", "market"]);
    assert_eq!(dependencies("use crate::{engine::Engine, series};\nuse crate::market::X;", &names).len(), 3);
    let mut broken = graph.clone();
    broken.get_mut("series").unwrap().insert("engine".into());
    assert!(cycle(&broken).is_some_and(|c| c.contains(&"series".to_string()) && c.contains(&"engine".to_string())));
    // The layering the crate documents: the wire format stays out of the engine and the state.
    for inner in ["engine", "market", "series", "journal"] {
        assert!(!graph[inner].contains("convert") && !modules[inner].contains("crate::proto"), "{inner}.rs reads protobuf messages");
    }
}
