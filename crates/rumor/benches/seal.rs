//! Cost of sealing and opening a 1,400-byte packet: the AES-256-GCM of
//! earlier versions against the XChaCha20-Poly1305 that replaced it (same
//! run, same machine), and the whole encrypted envelope with its replay
//! check. Run: `cargo bench -p rumor --bench seal`.
//!
//! Before criterion's groups (which run one after another, so a shared
//! machine's load can favour either side) it prints an interleaved
//! measurement: short blocks of each operation in turn, the median block
//! of each, and their ratio.

use std::cell::Cell;
use std::hint::black_box;
use std::time::Instant;

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use criterion::{criterion_group, BatchSize, Criterion};
use rumor::framing::Framer;
use rumor::keyring::SEAL_OVERHEAD;
use rumor::{Key, Keyring};

const PACKET: usize = 1400;
const KEY: [u8; 32] = [7; 32];
/// What the AES-256-GCM envelope added: a 12-byte nonce and a 16-byte tag.
const GCM_OVERHEAD: usize = 12 + 16;

/// The sealing of earlier versions: random 96-bit nonce, AES-256-GCM.
fn gcm_seal(cipher: &Aes256Gcm, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; 12];
    getrandom::fill(&mut nonce).expect("random");
    let mut out = Vec::with_capacity(plaintext.len() + GCM_OVERHEAD);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plaintext);
    let tag = cipher
        .encrypt_inout_detached(&Nonce::from(nonce), aad, (&mut out[12..]).into())
        .expect("seal");
    out.extend_from_slice(&tag);
    out
}

fn gcm_open(cipher: &Aes256Gcm, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    let (nonce, rest) = sealed.split_at(12);
    let (ct, tag) = rest.split_at(rest.len() - 16);
    let mut buf = ct.to_vec();
    cipher
        .decrypt_inout_detached(
            <&Nonce<_>>::try_from(nonce).ok()?,
            aad,
            (&mut buf[..]).into(),
            <&Tag>::try_from(tag).ok()?,
        )
        .ok()?;
    Some(buf)
}

fn aead(c: &mut Criterion) {
    let body = vec![0x5a; PACKET];
    let aad = [0xB2, 0];
    let gcm = Aes256Gcm::new(&KEY.into());
    let ring = Keyring::new(Key::from_bytes(KEY));
    eprintln!(
        "bytes added per packet by the AEAD: AES-256-GCM {GCM_OVERHEAD}, \
         XChaCha20-Poly1305 {SEAL_OVERHEAD} (+{})",
        SEAL_OVERHEAD - GCM_OVERHEAD
    );
    let mut g = c.benchmark_group("aead_1400");
    g.bench_function("seal/aes256gcm", |b| {
        b.iter(|| gcm_seal(&gcm, &aad, black_box(&body)))
    });
    g.bench_function("seal/xchacha20poly1305", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(PACKET + SEAL_OVERHEAD);
            ring.seal(&aad, black_box(&body), &mut out).expect("seal");
            out
        })
    });
    let sealed = gcm_seal(&gcm, &aad, &body);
    g.bench_function("open/aes256gcm", |b| {
        b.iter(|| gcm_open(&gcm, &aad, black_box(&sealed)).expect("open"))
    });
    let mut sealed = Vec::new();
    ring.seal(&aad, &body, &mut sealed).expect("seal");
    g.bench_function("open/xchacha20poly1305", |b| {
        b.iter(|| ring.open(&aad, black_box(&sealed)).expect("open"))
    });
    g.finish();
}

fn envelope(c: &mut Criterion) {
    let body = vec![0x5a; PACKET];
    let framer = Framer::new("", Some(Keyring::new(Key::from_bytes(KEY)))).expect("framer");
    eprintln!(
        "encrypted envelope with an empty label: {} bytes around the body",
        framer.overhead()
    );
    let mut g = c.benchmark_group("envelope_1400");
    g.bench_function("seal", |b| {
        b.iter(|| framer.seal(black_box(&body)).expect("seal"))
    });
    // One packet a millisecond of simulated time, each opened once: the
    // replay cache works as it would at 1,000 packets/s.
    let clock = Cell::new(1_800_000_000_000u64);
    g.bench_function("open_with_replay_check", |b| {
        b.iter_batched(
            || {
                clock.set(clock.get() + 1);
                framer.seal_at(&body, clock.get()).expect("seal")
            },
            |p| {
                framer
                    .open_at(black_box(&p), clock.get())
                    .expect("fresh packet opens")
                    .into_owned()
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

/// Median ns per operation of each of `ops`, timed in turns of `block`
/// operations for `rounds` rounds.
fn interleaved(ops: &mut [(&str, &mut dyn FnMut())], block: u32, rounds: usize) -> Vec<f64> {
    let mut samples = vec![Vec::with_capacity(rounds); ops.len()];
    for _ in 0..rounds {
        for (i, (_, op)) in ops.iter_mut().enumerate() {
            let t = Instant::now();
            for _ in 0..block {
                op();
            }
            samples[i].push(t.elapsed().as_nanos() as f64 / f64::from(block));
        }
    }
    samples
        .into_iter()
        .map(|mut s| {
            s.sort_by(f64::total_cmp);
            s[s.len() / 2]
        })
        .collect()
}

fn ratios() {
    let body = vec![0x5a; PACKET];
    let aad = [0xB2, 0];
    let gcm = Aes256Gcm::new(&KEY.into());
    let ring = Keyring::new(Key::from_bytes(KEY));
    let gcm_sealed = gcm_seal(&gcm, &aad, &body);
    let mut xc_sealed = Vec::new();
    ring.seal(&aad, &body, &mut xc_sealed).expect("seal");
    let framer = Framer::new("", Some(Keyring::new(Key::from_bytes(KEY)))).expect("framer");
    let mut clock = 1_800_000_000_000u64;
    let mut ops: [(&str, &mut dyn FnMut()); 5] = [
        ("seal aes256gcm", &mut || {
            black_box(gcm_seal(&gcm, &aad, black_box(&body)));
        }),
        ("seal xchacha20poly1305", &mut || {
            let mut out = Vec::with_capacity(PACKET + SEAL_OVERHEAD);
            ring.seal(&aad, black_box(&body), &mut out).expect("seal");
            black_box(out);
        }),
        ("open aes256gcm", &mut || {
            black_box(gcm_open(&gcm, &aad, black_box(&gcm_sealed)));
        }),
        ("open xchacha20poly1305", &mut || {
            black_box(ring.open(&aad, black_box(&xc_sealed)));
        }),
        ("envelope seal + open (replay check)", &mut || {
            clock += 1;
            let p = framer.seal_at(black_box(&body), clock).expect("seal");
            black_box(framer.open_at(&p, clock).expect("open").into_owned());
        }),
    ];
    let ns = interleaved(&mut ops, 200, 300);
    eprintln!("interleaved, 1,400-byte packets, median ns per operation:");
    for ((name, _), v) in ops.iter().zip(&ns) {
        eprintln!("  {name:38} {v:8.0}");
    }
    eprintln!(
        "  ratio xchacha/aes-gcm: seal {:.2}, open {:.2}",
        ns[1] / ns[0],
        ns[3] / ns[2]
    );
}

criterion_group!(benches, aead, envelope);

fn main() {
    ratios();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
