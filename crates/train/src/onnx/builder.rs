//! A small builder for ONNX graphs of double-precision tensors.

use super::proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto, attribute_proto::AttributeType, tensor_proto::DataType,
    tensor_shape_proto::Dimension, tensor_shape_proto::dimension::Value as DimValue, type_proto::Tensor,
    type_proto::Value as TypeValue,
};

/// One dimension of a graph input or output: fixed, or named and free (the batch).
#[derive(Debug, Clone)]
pub enum Dim {
    /// A fixed size.
    Fixed(i64),
    /// A symbolic size, e.g. `"batch"`.
    Named(&'static str),
}

/// Accumulates nodes, constants, inputs and outputs; [`GraphBuilder::into_model`] wraps them.
#[derive(Debug, Default)]
pub struct GraphBuilder {
    graph: GraphProto,
    counter: usize,
}

fn value_info(name: &str, elem_type: DataType, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Dim::Fixed(n) => DimValue::DimValue(*n),
                Dim::Named(s) => DimValue::DimParam(s.to_string()),
            }),
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(TypeValue::TensorType(Tensor { elem_type: elem_type as i32, shape: Some(TensorShapeProto { dim }) })),
        }),
        doc_string: String::new(),
    }
}

impl GraphBuilder {
    /// An empty graph called `name`.
    pub fn new(name: &str) -> Self {
        Self { graph: GraphProto { name: name.into(), ..GraphProto::default() }, counter: 0 }
    }

    /// Declares a double-precision graph input.
    pub fn input(&mut self, name: &str, dims: &[Dim], doc: &str) -> String {
        let mut v = value_info(name, DataType::Double, dims);
        v.doc_string = doc.into();
        self.graph.input.push(v);
        name.into()
    }

    /// Declares `name` a double-precision graph output.
    pub fn output(&mut self, name: &str, dims: &[Dim], doc: &str) {
        let mut v = value_info(name, DataType::Double, dims);
        v.doc_string = doc.into();
        self.graph.output.push(v);
    }

    fn fresh(&mut self, stem: &str) -> String {
        self.counter += 1;
        format!("{stem}_{}", self.counter)
    }

    /// A double constant of shape `dims`.
    pub fn constant(&mut self, stem: &str, dims: &[i64], values: &[f64]) -> String {
        let name = self.fresh(stem);
        self.graph.initializer.push(TensorProto {
            dims: dims.to_vec(),
            data_type: DataType::Double as i32,
            double_data: values.to_vec(),
            name: name.clone(),
            ..TensorProto::default()
        });
        name
    }

    /// An int64 constant of shape `dims` (indices).
    pub fn constant_i64(&mut self, stem: &str, dims: &[i64], values: &[i64]) -> String {
        let name = self.fresh(stem);
        self.graph.initializer.push(TensorProto {
            dims: dims.to_vec(),
            data_type: DataType::Int64 as i32,
            int64_data: values.to_vec(),
            name: name.clone(),
            ..TensorProto::default()
        });
        name
    }

    /// Adds a node `op(inputs)` with integer attributes; returns its output's name, `output`
    /// when given (a graph output) or a fresh one.
    pub fn op(&mut self, op: &str, inputs: &[&str], output: Option<&str>, int_attrs: &[(&str, i64)]) -> String {
        let out = output.map_or_else(|| self.fresh(&op.to_lowercase()), str::to_string);
        let name = self.fresh(op);
        self.graph.node.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out.clone()],
            name,
            op_type: op.into(),
            attribute: int_attrs
                .iter()
                .map(|(k, v)| AttributeProto { name: k.to_string(), i: *v, r#type: AttributeType::Int as i32, ..Default::default() })
                .collect(),
            domain: String::new(),
        });
        out
    }

    /// Column `k` of a `[batch, n]` tensor, as `[batch]`.
    pub fn column(&mut self, x: &str, k: i64) -> String {
        let index = self.constant_i64("col", &[], &[k]);
        self.op("Gather", &[x, &index], None, &[("axis", 1)])
    }

    /// Wraps the graph into a model with `metadata` in `metadata_props`.
    pub fn into_model(self, doc: &str, metadata: &[(String, String)]) -> ModelProto {
        ModelProto {
            ir_version: super::IR_VERSION,
            producer_name: "foresight".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            domain: "foresight".into(),
            model_version: 1,
            doc_string: doc.into(),
            graph: Some(self.graph),
            opset_import: vec![OperatorSetIdProto { domain: String::new(), version: super::OPSET }],
            metadata_props: metadata
                .iter()
                .map(|(k, v)| StringStringEntryProto { key: k.clone(), value: v.clone() })
                .collect(),
        }
    }
}
