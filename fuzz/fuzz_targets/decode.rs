//! Feeds arbitrary bytes to the codec as every message type: it must return, never panic,
//! and whatever decodes must encode and decode again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::*;

fn check<T: serde::Serialize + serde::de::DeserializeOwned>(data: &[u8]) {
    if let Ok(message) = decode::<T>(data) {
        let again = encode(&message).expect("a decoded message re-encodes");
        let _ = decode::<T>(&again).expect("a re-encoded message decodes");
    }
}

fuzz_target!(|data: &[u8]| {
    check::<AgentAdvert>(data);
    check::<TaskStatus>(data);
    check::<FrameworkCall>(data);
    check::<CallReply>(data);
    check::<Event>(data);
    check::<AgentCommand>(data);
    check::<AgentReply>(data);
    check::<ModuleChunk>(data);
});
