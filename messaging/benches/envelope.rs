//! Envelopes per second: pack and unpack, as Sichat sends (sign + authcrypt) and anoncrypt
//! (over a signature), to 1 and 3 recipient keys; plus unsigned authcrypt to one key, the
//! figure other DIDComm libraries quote.
//!
//! `cargo bench -p sichat-messaging --bench envelope -- --warm-up-time 2 --measurement-time 5`
//!
//! Groups `pack`, `unpack` and `primitives` measure wall time. `cpu/…` repeats the headline
//! cases measuring the thread's CPU time, which other work on a shared machine inflates far
//! less than it inflates wall time.

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use serde_json::json;
use sichat_core::did::Did;
use sichat_core::keys::{Ed25519KeyPair, X25519KeyPair};
use sichat_core::resolver::Keys;
use sichat_messaging::{
    pack_anoncrypt, pack_authcrypt, unpack, AgreementKey, Message, RecipientKey, SigningKey, UnpackOptions,
};
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;

struct Party {
    did: Did,
    sign_kid: String,
    sign: Ed25519KeyPair,
    agree: Vec<AgreementKey>,
}

impl Party {
    fn new(name: &str, devices: usize) -> Self {
        let did = Did::parse(&format!("did:web:example.org:users:{name}")).expect("a DID");
        let agree = (0..devices)
            .map(|i| AgreementKey::new(did.url(&format!("d{i}-x25519")), X25519KeyPair::generate()))
            .collect();
        Party { sign_kid: did.url("d0"), did, sign: Ed25519KeyPair::generate(), agree }
    }

    fn keys(&self) -> Keys {
        let mut vms = vec![json!({"id": self.sign_kid, "type": "Multikey", "controller": self.did,
                                  "publicKeyMultibase": self.sign.public().to_multibase()})];
        for k in &self.agree {
            vms.push(json!({"id": k.kid(), "type": "Multikey", "controller": self.did,
                            "publicKeyMultibase": k.public().to_multibase()}));
        }
        let doc = json!({"id": self.did, "verificationMethod": vms, "authentication": [self.sign_kid],
                         "keyAgreement": self.agree.iter().map(|k| k.kid()).collect::<Vec<_>>()});
        Keys::from_document(self.did.as_str(), &doc).expect("a DID document")
    }

    fn signer(&self) -> SigningKey<'_> {
        SigningKey { kid: &self.sign_kid, key: &self.sign }
    }
}

#[derive(Clone, Copy)]
enum Mode {
    SignAuthcrypt,
    Authcrypt,
    SignAnoncrypt,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::SignAuthcrypt => "sign+authcrypt",
            Mode::Authcrypt => "authcrypt (unsigned)",
            Mode::SignAnoncrypt => "sign+anoncrypt",
        }
    }

    fn pack(self, msg: &Message, alice: &Party, to: &[RecipientKey]) -> String {
        match self {
            Mode::SignAuthcrypt => pack_authcrypt(msg, &alice.agree[0], Some(&alice.signer()), to),
            Mode::Authcrypt => pack_authcrypt(msg, &alice.agree[0], None, to),
            Mode::SignAnoncrypt => pack_anoncrypt(msg, Some(&alice.signer()), to),
        }
        .expect("pack")
    }
}

fn envelopes(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("a runtime");
    let alice = Party::new("alice", 1);
    let cases = [
        (Mode::SignAuthcrypt, 1),
        (Mode::SignAuthcrypt, 3),
        (Mode::Authcrypt, 1),
        (Mode::SignAnoncrypt, 1),
        (Mode::SignAnoncrypt, 3),
    ];
    let opts = UnpackOptions::default();
    let dir: HashMap<String, Arc<Keys>> = HashMap::from([(alice.did.to_string(), Arc::new(alice.keys()))]);

    let mut pack = c.benchmark_group("pack");
    pack.throughput(Throughput::Elements(1));
    for (mode, n) in cases {
        let bob = Party::new("bob", n);
        let to = RecipientKey::all_of(&bob.keys());
        let msg = Message::new(
            "https://didcomm.org/basicmessage/2.0/message",
            json!({"content": "Hello, Bob! How are you today?"}),
        )
        .with_from(alice.did.clone())
        .with_to(vec![bob.did.clone()]);
        pack.bench_with_input(BenchmarkId::new(mode.name(), format!("{n} key(s)")), &msg, |b, msg| {
            b.iter(|| black_box(mode.pack(msg, &alice, &to)))
        });
    }
    pack.finish();

    let mut open = c.benchmark_group("unpack");
    open.throughput(Throughput::Elements(1));
    for (mode, n) in cases {
        let bob = Party::new("bob", n);
        let to = RecipientKey::all_of(&bob.keys());
        let msg = Message::new(
            "https://didcomm.org/basicmessage/2.0/message",
            json!({"content": "Hello, Bob! How are you today?"}),
        )
        .with_from(alice.did.clone())
        .with_to(vec![bob.did.clone()]);
        let packed = mode.pack(&msg, &alice, &to);
        // The last device's key: the recipient entry found last.
        let ours = &bob.agree[n - 1..];
        open.bench_with_input(BenchmarkId::new(mode.name(), format!("{n} key(s)")), &packed, |b, packed| {
            b.iter(|| black_box(rt.block_on(unpack(packed.as_bytes(), ours, &dir, &opts)).expect("unpack")))
        });
    }
    open.finish();

    // The floor: what one envelope must at least compute.
    let mut floor = c.benchmark_group("primitives");
    floor.throughput(Throughput::Elements(1));
    let (x, y) = (X25519KeyPair::generate(), X25519KeyPair::generate().public());
    floor.bench_function("X25519 key agreement", |b| b.iter(|| black_box(x.diffie_hellman(&y))));
    floor.bench_function("X25519 key generation", |b| b.iter(|| black_box(X25519KeyPair::generate().public())));
    let sig = alice.sign.sign(b"message");
    floor.bench_function("Ed25519 sign", |b| b.iter(|| black_box(alice.sign.sign(b"message"))));
    floor.bench_function("Ed25519 verify", |b| b.iter(|| black_box(alice.sign.public().verify(b"message", &sig))));
    floor.finish();
}

/// CPU time of the calling thread (`CLOCK_THREAD_CPUTIME_ID`), in nanoseconds.
struct ThreadCpu(WallTime);

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl Measurement for ThreadCpu {
    type Intermediate = u64;
    type Value = u64;
    fn start(&self) -> u64 {
        thread_cpu_ns()
    }
    fn end(&self, start: u64) -> u64 {
        thread_cpu_ns().saturating_sub(start)
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        self.0.formatter()
    }
}

fn envelopes_cpu(c: &mut Criterion<ThreadCpu>) {
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("a runtime");
    let alice = Party::new("alice", 1);
    let dir: HashMap<String, Arc<Keys>> = HashMap::from([(alice.did.to_string(), Arc::new(alice.keys()))]);
    let opts = UnpackOptions::default();
    let mut g = c.benchmark_group("cpu");
    g.throughput(Throughput::Elements(1));
    for mode in [Mode::SignAuthcrypt, Mode::Authcrypt] {
        let bob = Party::new("bob", 1);
        let to = RecipientKey::all_of(&bob.keys());
        let msg = Message::new(
            "https://didcomm.org/basicmessage/2.0/message",
            json!({"content": "Hello, Bob! How are you today?"}),
        )
        .with_from(alice.did.clone())
        .with_to(vec![bob.did.clone()]);
        g.bench_function(format!("pack/{}/1 key(s)", mode.name()), |b| {
            b.iter(|| black_box(mode.pack(&msg, &alice, &to)))
        });
        let packed = mode.pack(&msg, &alice, &to);
        g.bench_function(format!("unpack/{}/1 key(s)", mode.name()), |b| {
            b.iter(|| black_box(rt.block_on(unpack(packed.as_bytes(), &bob.agree, &dir, &opts)).expect("unpack")))
        });
    }
    g.finish();
}

criterion_group!(benches, envelopes);
criterion_group! {
    name = cpu;
    config = Criterion::default().with_measurement(ThreadCpu(WallTime));
    targets = envelopes_cpu
}
criterion_main!(benches, cpu);
