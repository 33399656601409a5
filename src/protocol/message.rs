//! Requests in, responses and notifications out (PROTOCOL §3).
//!
//! The dialect is not JSON-RPC 2.0: no `jsonrpc` member, `status` instead of `result`, ids echoed
//! as integers. Output is compact JSON plus `\n` with alphabetically ordered keys, which is what
//! serde_json's default (BTreeMap-backed) `Value` gives for free.

use serde_json::{Map, Value, json};

use super::errors::RpcError;

/// A syntactically valid request: it has an id and a `Namespace.Method`.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The id, echoed in the response.
    pub id: i64,
    /// The part before the dot.
    pub namespace: String,
    /// The part after the dot.
    pub method: String,
    /// The params object; empty when missing or not an object (as the reference treats it).
    pub params: Map<String, Value>,
}

impl Request {
    /// Checks the envelope of a decoded message, in the reference's order: id, then method.
    pub fn parse(message: Value) -> Result<Request, RpcError> {
        let Value::Object(mut object) = message else {
            return Err(RpcError::MissingId);
        };
        let id = object.get("id").and_then(parse_id).ok_or(RpcError::MissingId)?;
        let method = match object.get("method") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::Bool(b)) => b.to_string(),
            _ => String::new(),
        };
        let mut parts = method.split('.');
        let (Some(namespace), Some(name), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(RpcError::InvalidMethod { id, got: method });
        };
        let params = match object.remove("params") {
            Some(Value::Object(params)) => params,
            _ => Map::new(),
        };
        Ok(Request { id, namespace: namespace.to_string(), method: name.to_string(), params })
    }
}

/// An id is a JSON integer or a string holding one (clients of the reference send both).
fn parse_id(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15).map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// `{"id":..,"params":{..},"status":"success"}`.
pub fn success(id: i64, params: Value) -> Value {
    json!({"id": id, "params": params, "status": "success"})
}

/// `{"error":"..","id":..,"status":"error"}`.
pub fn error(id: i64, text: &str) -> Value {
    json!({"error": text, "id": id, "status": "error"})
}

/// `{"id":..,"notification":"Namespace.Name","params":{..}}`.
pub fn notification(id: u64, name: &str, params: Value) -> Value {
    json!({"id": id, "notification": name, "params": params})
}

/// Compact JSON followed by `\n`: one message on the wire.
pub fn encode(message: &Value) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(message).expect("a serde_json::Value always serializes");
    bytes.push(b'\n');
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_as_integer_or_numeric_string() {
        let r = Request::parse(json!({"id": "7", "method": "A.B"})).unwrap();
        assert_eq!(r.id, 7);
        let r = Request::parse(json!({"id": 0, "method": "A.B", "params": {"x": 1}})).unwrap();
        assert_eq!((r.id, r.namespace.as_str(), r.method.as_str()), (0, "A", "B"));
        assert_eq!(r.params.get("x"), Some(&json!(1)));
    }

    #[test]
    fn missing_or_unusable_id() {
        for bad in [json!({"method": "A.B"}), json!({"id": "x"}), json!({"id": null}), json!([1])] {
            assert_eq!(Request::parse(bad), Err(RpcError::MissingId));
        }
    }

    #[test]
    fn method_must_have_exactly_one_dot() {
        for (method, got) in [(json!("Hello"), "Hello"), (json!("A.B.C"), "A.B.C"), (json!(null), "")] {
            let err = Request::parse(json!({"id": 3, "method": method})).unwrap_err();
            assert_eq!(err, RpcError::InvalidMethod { id: 3, got: got.to_string() });
        }
    }

    #[test]
    fn output_is_compact_sorted_and_newline_terminated() {
        let bytes = encode(&success(1, json!({"b": 1, "a": 2})));
        assert_eq!(bytes, b"{\"id\":1,\"params\":{\"a\":2,\"b\":1},\"status\":\"success\"}\n");
        let bytes = encode(&error(-1, "x"));
        assert_eq!(bytes, b"{\"error\":\"x\",\"id\":-1,\"status\":\"error\"}\n");
    }
}
