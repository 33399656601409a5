//! Declarative description of an API: its methods, params, returns, notifications and enums.
//!
//! One table per API (v1 proxy, v2 tunnel proxy) drives three things that must agree: which calls
//! exist (`No such namespace` / `No such method`), how params are validated (the reference's
//! template rules and error texts), and what `RemoteProxy.Introspect` returns.

use serde_json::{Map, Value, json};

use super::errors::RpcError;
use super::message::Request;
use super::qt_json;

/// The type of a param or return value, as named in introspection.
#[derive(Debug, Clone, Copy)]
pub enum ParamType {
    /// `String`; numbers and bools are accepted and converted, as the reference does.
    String,
    /// `Uuid`: must be a JSON string; its content is checked by the method itself.
    Uuid,
    UInt,
    Bool,
    /// `Object`: anything (the reference does not check it).
    Object,
    /// `$ref:<Enum>`: one of the values of a named enum.
    Ref(&'static EnumSpec),
}

impl ParamType {
    fn template(self) -> String {
        match self {
            ParamType::String => "String".into(),
            ParamType::Uuid => "Uuid".into(),
            ParamType::UInt => "UInt".into(),
            ParamType::Bool => "Bool".into(),
            ParamType::Object => "Object".into(),
            ParamType::Ref(spec) => format!("$ref:{}", spec.name),
        }
    }
}

/// One key of a params or returns template.
#[derive(Debug, Clone, Copy)]
pub struct Param {
    pub key: &'static str,
    pub ty: ParamType,
    /// Optional keys appear as `o:<key>` in introspection.
    pub optional: bool,
}

impl Param {
    /// A required key.
    pub const fn required(key: &'static str, ty: ParamType) -> Param {
        Param { key, ty, optional: false }
    }

    /// An optional key.
    pub const fn optional(key: &'static str, ty: ParamType) -> Param {
        Param { key, ty, optional: true }
    }

    fn template_key(&self) -> String {
        if self.optional { format!("o:{}", self.key) } else { self.key.to_string() }
    }
}

/// A named enum listed under `types` in introspection.
#[derive(Debug)]
pub struct EnumSpec {
    /// The type name, e.g. `AuthenticationError`.
    pub name: &'static str,
    /// The values in wire order.
    pub values: &'static [&'static str],
}

/// A method.
#[derive(Debug)]
pub struct MethodSpec {
    pub namespace: &'static str,
    pub name: &'static str,
    /// Human description (introspection).
    pub description: &'static str,
    pub params: &'static [Param],
    pub returns: &'static [Param],
}

/// A notification the server may send.
#[derive(Debug)]
pub struct NotificationSpec {
    pub namespace: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    pub params: &'static [Param],
}

/// A whole API.
#[derive(Debug)]
pub struct ApiSpec {
    pub methods: &'static [&'static MethodSpec],
    pub notifications: &'static [NotificationSpec],
    /// Every enum listed under `types`.
    pub types: &'static [&'static EnumSpec],
}

/// Keys whose values are secrets and must not be echoed in error texts.
const SECRET_KEYS: &[&str] = &["token"];

impl ApiSpec {
    /// Every check a decoded message goes through, in the reference's order: envelope (id,
    /// method), namespace, method, params.
    pub fn accept(&self, message: Value) -> Result<(Request, &MethodSpec), RpcError> {
        let request = Request::parse(message)?;
        let method = self.resolve(&request)?;
        Ok((request, method))
    }

    /// Finds the method a request names and validates its params, in the reference's order:
    /// namespace, method, params.
    pub fn resolve(&self, request: &Request) -> Result<&MethodSpec, RpcError> {
        let id = request.id;
        if !self.methods.iter().any(|m| m.namespace == request.namespace) {
            return Err(RpcError::NoSuchNamespace { id });
        }
        let method = self
            .methods
            .iter()
            .find(|m| m.namespace == request.namespace && m.name == request.method)
            .ok_or(RpcError::NoSuchMethod { id })?;
        method.validate(&request.params).map_err(|detail| RpcError::InvalidParams { id, detail })?;
        Ok(method)
    }

    /// The result of `RemoteProxy.Introspect`.
    pub fn introspect(&self) -> Value {
        let methods: Map<String, Value> = self
            .methods
            .iter()
            .map(|m| {
                let value = json!({
                    "description": m.description,
                    "params": template(m.params),
                    "returns": template(m.returns),
                });
                (format!("{}.{}", m.namespace, m.name), value)
            })
            .collect();
        let notifications: Map<String, Value> = self
            .notifications
            .iter()
            .map(|n| {
                let value = json!({"description": n.description, "params": template(n.params)});
                (format!("{}.{}", n.namespace, n.name), value)
            })
            .collect();
        let types: Map<String, Value> =
            self.types.iter().map(|t| (t.name.to_string(), json!(t.values))).collect();
        json!({"methods": methods, "notifications": notifications, "types": types})
    }
}

fn template(params: &[Param]) -> Value {
    Value::Object(params.iter().map(|p| (p.template_key(), Value::String(p.ty.template()))).collect())
}

impl MethodSpec {
    /// Validates params like the reference's `JsonTypes::validateMap`: template keys in sorted
    /// order (missing required key, then that key's type), then unknown keys in sorted order.
    /// The error is the text after `Invalid params: `.
    pub fn validate(&self, params: &Map<String, Value>) -> Result<(), String> {
        let mut template: Vec<&Param> = self.params.iter().collect();
        template.sort_by_key(|p| p.template_key());
        for param in template {
            match params.get(param.key) {
                None if param.optional => {}
                None => return Err(format!("Missing key {} in {}", param.key, dump(params))),
                Some(value) => check_type(param, value)?,
            }
        }
        if let Some(key) = params.keys().find(|k| !self.params.iter().any(|p| p.key == k.as_str())) {
            return Err(format!("Forbidden key \"{key}\" in {}", dump(params)));
        }
        Ok(())
    }
}

fn check_type(param: &Param, value: &Value) -> Result<(), String> {
    let scalar = matches!(value, Value::String(_) | Value::Number(_) | Value::Bool(_));
    let (ok, what) = match param.ty {
        ParamType::String => (scalar, "a string"),
        ParamType::Uuid => (value.is_string(), "a uuid"),
        ParamType::Bool => (scalar, "a bool"),
        ParamType::UInt => (scalar, "a int"),
        ParamType::Object => (true, ""),
        ParamType::Ref(spec) => {
            let ok = value.as_str().is_some_and(|v| spec.values.contains(&v));
            if !ok {
                let shown = qt_to_string(param, value);
                return Err(format!("Value {shown} not allowed in {}", spec.values.join(", ")));
            }
            (true, "")
        }
    };
    if ok { Ok(()) } else { Err(format!("Param {} is not {what}.", qt_to_string(param, value))) }
}

/// `QVariant::toString()` of a JSON value: scalars as text, everything else empty. Secret values
/// are never shown.
fn qt_to_string(param: &Param, value: &Value) -> String {
    if SECRET_KEYS.contains(&param.key) {
        return String::new();
    }
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => String::new(),
    }
}

/// The params as the reference prints them, with secret values replaced.
fn dump(params: &Map<String, Value>) -> String {
    let mut shown = params.clone();
    for key in SECRET_KEYS {
        if let Some(value) = shown.get_mut(*key) {
            *value = Value::String("MASKED".into());
        }
    }
    qt_json::to_indented(&Value::Object(shown))
}

/// A param value as a string, accepting numbers and bools where a string is expected (the
/// reference converts them). Callers use it after validation.
pub fn string_param(params: &Map<String, Value>, key: &str) -> Option<String> {
    match params.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static COLOR: EnumSpec = EnumSpec { name: "Color", values: &["Red", "Green"] };
    static CALL: MethodSpec = MethodSpec {
        namespace: "NS",
        name: "Call",
        description: "d",
        params: &[
            Param::required("uuid", ParamType::String),
            Param::required("name", ParamType::String),
            Param::required("token", ParamType::String),
            Param::optional("nonce", ParamType::String),
        ],
        returns: &[Param::required("color", ParamType::Ref(&COLOR))],
    };
    static OTHER: MethodSpec =
        MethodSpec { namespace: "NS", name: "Other", description: "", params: &[], returns: &[] };
    static SPEC: ApiSpec = ApiSpec { methods: &[&CALL, &OTHER], notifications: &[], types: &[&COLOR] };

    fn request(ns: &str, method: &str, params: Value) -> Request {
        let Value::Object(params) = params else { panic!() };
        Request { id: 4, namespace: ns.into(), method: method.into(), params }
    }

    #[test]
    fn unknown_namespace_and_method() {
        assert_eq!(
            SPEC.resolve(&request("X", "Call", json!({}))).unwrap_err(),
            RpcError::NoSuchNamespace { id: 4 }
        );
        assert_eq!(
            SPEC.resolve(&request("NS", "Nope", json!({}))).unwrap_err(),
            RpcError::NoSuchMethod { id: 4 }
        );
    }

    #[test]
    fn missing_key_reports_first_in_sorted_order_and_masks_token() {
        let err = SPEC.resolve(&request("NS", "Call", json!({"uuid": "u", "token": "secret"}))).unwrap_err();
        let RpcError::InvalidParams { detail, .. } = err else { panic!() };
        assert_eq!(detail, "Missing key name in {\n    \"token\": \"MASKED\",\n    \"uuid\": \"u\"\n}\n");
    }

    #[test]
    fn forbidden_key() {
        let params = json!({"uuid": "u", "name": "n", "token": "t", "extra": 1});
        let RpcError::InvalidParams { detail, .. } =
            SPEC.resolve(&request("NS", "Call", params)).unwrap_err()
        else {
            panic!()
        };
        assert!(detail.starts_with("Forbidden key \"extra\" in {\n"), "{detail}");
        assert!(!detail.contains("\"t\""));
    }

    #[test]
    fn numbers_are_accepted_as_strings_but_null_is_not() {
        assert!(SPEC.resolve(&request("NS", "Call", json!({"uuid": 5, "name": "n", "token": true}))).is_ok());
        let RpcError::InvalidParams { detail, .. } = SPEC
            .resolve(&request("NS", "Call", json!({"uuid": null, "name": "n", "token": "t"})))
            .unwrap_err()
        else {
            panic!()
        };
        assert_eq!(detail, "Param  is not a string.");
    }

    #[test]
    fn introspection_shape() {
        let v = SPEC.introspect();
        assert_eq!(
            v["methods"]["NS.Call"]["params"],
            json!({"uuid": "String", "name": "String", "token": "String", "o:nonce": "String"})
        );
        assert_eq!(v["methods"]["NS.Call"]["returns"], json!({"color": "$ref:Color"}));
        assert_eq!(v["types"]["Color"], json!(["Red", "Green"]));
        assert_eq!(v["notifications"], json!({}));
    }
}
