//! Measures RS256 signing with aws-lc-rs and with ring on the same 2048-bit key, the choice
//! behind clef's signer. Run: `cargo run --release --example rs256_sign`.

// A measurement tool: any failure should stop it loudly.
#![allow(clippy::expect_used)]

use std::time::Instant;

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};

fn main() {
    let n = 2000;
    let msg = b"eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJodHRwczovL2lkLmV4YW1wbGUiLCJzdWIiOiJ1c2VyIn0";
    let aws = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("keygen");
    let der: Pkcs8V1Der<'static> = aws.as_der().expect("pkcs8");
    let ring_key = ring::signature::RsaKeyPair::from_pkcs8(der.as_ref()).expect("ring parses the same key");

    let rng = aws_lc_rs::rand::SystemRandom::new();
    let mut sig = vec![0u8; aws.public_modulus_len()];
    let t = Instant::now();
    for _ in 0..n {
        aws.sign(&aws_lc_rs::signature::RSA_PKCS1_SHA256, &rng, msg, &mut sig)
            .expect("sign");
    }
    let aws_us = t.elapsed().as_secs_f64() * 1e6 / f64::from(n);

    let rng = ring::rand::SystemRandom::new();
    let mut sig = vec![0u8; ring_key.public().modulus_len()];
    let t = Instant::now();
    for _ in 0..n {
        ring_key
            .sign(&ring::signature::RSA_PKCS1_SHA256, &rng, msg, &mut sig)
            .expect("sign");
    }
    let ring_us = t.elapsed().as_secs_f64() * 1e6 / f64::from(n);
    println!("RS256 sign, 2048-bit, {n} signatures: aws-lc-rs {aws_us:.0} µs, ring {ring_us:.0} µs");
}
