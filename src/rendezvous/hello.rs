//! What a peer's first message must be: a Micronets `CONN:HELLO`,
//! `{"message":{"messageId":..,"messageType":"CONN:HELLO","peerClass":..,"peerId":..,"requiresResponse":false}}`.
//! Only the type is required here; the message is forwarded to the partner byte for byte as sent.

use tokio_tungstenite::tungstenite::Message;

/// Whether `message` is a `CONN:HELLO` (text or binary JSON).
pub fn is_hello(message: &Message) -> bool {
    let bytes: &[u8] = match message {
        Message::Text(text) => text.as_bytes(),
        Message::Binary(data) => data,
        _ => return false,
    };
    serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .is_some_and(|value| value["message"]["messageType"] == "CONN:HELLO")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_conn_hello_is_a_hello() {
        let hello = r#"{"message":{"messageId":0,"messageType":"CONN:HELLO","peerClass":"micronets-manager","peerId":"12345678","requiresResponse":false}}"#;
        assert!(is_hello(&Message::text(hello)));
        assert!(is_hello(&Message::binary(hello.as_bytes().to_vec())));
        for other in [
            r#"{"message":{"messageId":1,"messageType":"REST:REQUEST","requiresResponse":true}}"#,
            r#"{"messageType":"CONN:HELLO"}"#,
            "CONN:HELLO",
            "",
        ] {
            assert!(!is_hello(&Message::text(other)), "{other}");
        }
        assert!(!is_hello(&Message::Ping(Vec::new().into())));
    }
}
