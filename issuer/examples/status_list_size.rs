//! Size of a Bitstring Status List credential with 100,000 credentials issued at random
//! indexes, for several revocation rates.
//!
//!     cargo run --release -p sichat-issuer --example status_list_size

use serde_json::json;
use sichat_core::ids::random_bytes;
use sichat_core::keys::Ed25519KeyPair;
use sichat_issuer::credential::sign_vc_jwt;
use sichat_issuer::status::{Bitstring, LIST_SIZE};

fn main() {
    let key = sichat_core::p256key::KeyPair::Ed25519(Ed25519KeyPair::generate());
    println!("{:>10} {:>10} {:>14} {:>16}", "issued", "revoked", "encodedList B", "signed vc+jwt B");
    for revoked_pct in [0.0, 0.1, 1.0, 10.0] {
        let mut bits = Bitstring::new(LIST_SIZE);
        let issued = 100_000usize;
        let revoked = (issued as f64 * revoked_pct / 100.0) as usize;
        let mut set = 0;
        while set < revoked {
            let i = u32::from_le_bytes(random_bytes::<4>()) as usize % LIST_SIZE;
            if bits.get(i) == Some(false) {
                bits.set(i, true).expect("in range");
                set += 1;
            }
        }
        let encoded = bits.encode();
        let url = "https://id.example.org/users/alice/status/0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
        let vc = json!({
            "@context": ["https://www.w3.org/ns/credentials/v2"],
            "id": url,
            "type": ["VerifiableCredential", "BitstringStatusListCredential"],
            "issuer": "did:web:id.example.org:users:alice",
            "validFrom": "2026-11-21T00:00:00Z",
            "credentialSubject": {"id": format!("{url}#list"), "type": "BitstringStatusList", "statusPurpose": "revocation", "encodedList": encoded},
        });
        let jwt = sign_vc_jwt(&key, "did:web:id.example.org:users:alice#issuing-1", &vc).expect("sign");
        println!("{issued:>10} {revoked:>10} {:>14} {:>16}", encoded.len(), jwt.len());
    }
}
