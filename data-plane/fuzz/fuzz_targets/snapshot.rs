//! Snapshot decoding and compilation on arbitrary bytes: the data plane's disk cache
//! (`source::decode_cache`), a protobuf `Snapshot` as the `ConfigService` stream delivers it, and
//! `Runtime::compile` / `RuntimeHandle::apply` of whatever decodes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use tollgate_data_plane::runtime::{Runtime, RuntimeHandle};
use tollgate_data_plane::source::{decode_cache, encode_cache};
use tollgate_proto::config::v1::Snapshot;

/// Header of the cache file: magic, format version, payload length, SHA-256 (see `source.rs`).
const CACHE_HEADER_LEN: usize = 8 + 4 + 8 + 32;

/// `Snapshot`'s `PartialEq` with NaN weights and budgets made comparable.
fn comparable(snapshot: &Snapshot) -> Snapshot {
    let mut s = snapshot.clone();
    let fix = |x: &mut f64| {
        if x.is_nan() {
            *x = f64::MAX;
        }
    };
    for p in &mut s.providers {
        p.keys.iter_mut().for_each(|k| fix(&mut k.weight));
    }
    s.virtual_keys
        .iter_mut()
        .for_each(|vk| fix(&mut vk.monthly_budget_usd));
    s
}

fn compile(snapshot: &Snapshot) {
    match Runtime::compile(snapshot) {
        Ok(runtime) => {
            assert_eq!(runtime.version, snapshot.version);
            assert_eq!(runtime.providers.len(), snapshot.providers.len());
            for p in &snapshot.providers {
                let compiled = runtime
                    .provider(&p.name)
                    .expect("every provider is compiled");
                let enabled = p.keys.iter().filter(|k| k.enabled).count();
                assert_eq!(compiled.keys.len(), enabled, "provider {:?}", p.name);
            }
            // Applied twice: the second compile carries state over from the first.
            let handle = RuntimeHandle::default();
            assert_eq!(handle.apply(snapshot).ok(), Some(snapshot.version));
            assert_eq!(handle.apply(snapshot).ok(), Some(snapshot.version));
        }
        Err(err) => {
            let _ = err.to_string();
            assert!(RuntimeHandle::default().apply(snapshot).is_err());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    // As read back from the disk cache at start.
    if let Ok(snapshot) = decode_cache(data) {
        compile(&snapshot);
    }

    // As received on the config stream, then cached.
    let Ok(snapshot) = Snapshot::decode(data) else {
        return;
    };
    let file = encode_cache(&snapshot);
    let back = decode_cache(&file).expect("a cache file just written reads back");
    assert_eq!(comparable(&back), comparable(&snapshot));
    assert!(
        decode_cache(&file[..file.len() - 1]).is_err(),
        "truncated file accepted"
    );
    if file.len() > CACHE_HEADER_LEN {
        let payload_len = file.len() - CACHE_HEADER_LEN;
        let at = CACHE_HEADER_LEN + crc32fast::hash(data) as usize % payload_len;
        let mut corrupt = file.clone();
        corrupt[at] ^= 0x20;
        assert!(
            decode_cache(&corrupt).is_err(),
            "corrupt payload byte {at} accepted"
        );
    }
    compile(&snapshot);
});
