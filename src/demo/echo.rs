//! The demo's upstream: answers every request with the method, path and headers it received,
//! as JSON, so what authgate forwarded (and stripped) is visible.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use authgate::httpd::{respond, Handler};

pub fn handler() -> Handler {
    Arc::new(|parts, body| {
        Box::pin(async move {
            let mut headers: Map<String, Value> = Map::new();
            for (name, value) in &parts.headers {
                let v = Value::String(String::from_utf8_lossy(value.as_bytes()).into_owned());
                match headers.get_mut(name.as_str()) {
                    Some(Value::Array(a)) => a.push(v),
                    _ => {
                        headers.insert(name.as_str().to_owned(), Value::Array(vec![v]));
                    }
                }
            }
            let out = json!({
                "method": parts.method.as_str(),
                "path": parts.uri.path_and_query().map_or("/", |p| p.as_str()),
                "headers": headers,
                "body_bytes": body.len(),
            });
            respond(200, "application/json", format!("{out:#}\n"))
        })
    })
}
