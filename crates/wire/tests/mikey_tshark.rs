//! Our MIKEY bytes as an independent implementation reads them: Wireshark's dissector, via
//! `tshark`. Skipped (with a note on stderr) when `tshark` or `text2pcap` is not installed.
//!
//! Known limits of the dissector (Wireshark 4.0), which the messages here avoid: it does not
//! dissect CHASH (it stops after one), it parses CERT data as a DER X.509 certificate, and it
//! shows only the first Key data sub-payload of a NULL-encrypted KEMAC.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;

use m2msec_wire::mikey::{
    DataType, EncrAlg, ErrorCode, ErrorPayload, GeneralExt, Header, Id, IdType, Kemac,
    KemacPlaintext, KeyData, KeyKind, KeyValidity, Mac, Message, Payload, Pke, PkeCache, PrfFunc,
    Rand, SecurityPolicy, Sign, SignType, SrtpAuthAlg, SrtpCs, SrtpEncrAlg, SrtpPolicy, Timestamp,
    Verification, payload_type,
};

fn available(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A small deterministic generator (no RNG dependency; the point is varied lengths).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn below(&mut self, n: u64) -> usize {
        usize::try_from(self.next() % n).unwrap()
    }

    fn bytes(&mut self, max: u64) -> Vec<u8> {
        (0..self.below(max + 1))
            .map(|_| self.next().to_be_bytes()[7])
            .collect()
    }
}

fn header(data_type: DataType, n_cs: usize) -> Header {
    Header {
        data_type,
        v: n_cs % 2 == 1,
        prf: PrfFunc::Mikey1,
        csb_id: 0xc0ff_ee00 + u32::try_from(n_cs).unwrap(),
        cs_map: (0..n_cs)
            .map(|i| SrtpCs {
                policy_no: u8::try_from(i).unwrap(),
                ssrc: 0x1111_0000 + u32::try_from(i).unwrap(),
                roc: 7,
            })
            .collect(),
    }
}

fn messages() -> Vec<Message> {
    let key = KeyData::new(
        KeyKind::Tgk,
        vec![0x42; 16],
        Some(vec![0x5a; 14]),
        KeyValidity::Null,
    );
    let plaintext = KemacPlaintext {
        id: None,
        keys: vec![key],
    }
    .encode()
    .unwrap()
    .to_vec();
    let sp = SecurityPolicy::srtp(
        0,
        &SrtpPolicy {
            encr_alg: Some(SrtpEncrAlg::AesCm),
            encr_key_len: Some(16),
            auth_alg: Some(SrtpAuthAlg::HmacSha1),
            auth_key_len: Some(20),
            salt_key_len: Some(14),
            srtp_encr: Some(true),
            srtcp_encr: Some(true),
            srtp_auth: Some(true),
            auth_tag_len: Some(10),
            ..SrtpPolicy::default()
        },
    );
    let mut out = vec![
        // Pre-shared-key I_MESSAGE (§3.1) with a NULL-encrypted KEMAC, as the dissector decodes it.
        Message {
            header: header(DataType::PreShared, 1),
            payloads: vec![
                Payload::T(Timestamp::NtpUtc(0xe65d_6b80_8000_0000)),
                Payload::Rand(Rand { data: vec![9; 16] }),
                Payload::Id(Id {
                    id_type: IdType::Uri,
                    data: b"coap://tp1.example".to_vec(),
                }),
                Payload::Sp(sp.clone()),
                Payload::Kemac(Kemac {
                    encr_alg: EncrAlg::Null,
                    encr_data: plaintext,
                    mac: Mac::HmacSha1_160([0x11; 20]),
                }),
            ],
        },
        // Verification message.
        Message {
            header: header(DataType::PskVerify, 0),
            payloads: vec![
                Payload::T(Timestamp::Counter(99)),
                Payload::Id(Id {
                    id_type: IdType::Nai,
                    data: b"r@example".to_vec(),
                }),
                Payload::V(Verification {
                    mac: Mac::HmacSha1_160([0x22; 20]),
                }),
            ],
        },
        // Public-key I_MESSAGE (§3.2) carrying a general extension, signed.
        Message {
            header: header(DataType::PublicKey, 2),
            payloads: vec![
                Payload::T(Timestamp::Ntp(1)),
                Payload::Rand(Rand { data: vec![3; 16] }),
                Payload::Sp(sp),
                Payload::GeneralExt(GeneralExt {
                    ext_type: 250,
                    data: vec![1, 3, 5],
                }),
                Payload::Kemac(Kemac {
                    encr_alg: EncrAlg::AesCm128,
                    encr_data: vec![0xee; 40],
                    mac: Mac::HmacSha1_160([0x33; 20]),
                }),
                Payload::Pke(Pke {
                    cache: PkeCache::CacheForCsb,
                    data: vec![0x44; 256],
                }),
                Payload::Sign(Sign {
                    s_type: SignType::Pkcs1v15,
                    signature: vec![0x55; 256],
                }),
            ],
        },
        // Error message.
        Message {
            header: header(DataType::Error, 0),
            payloads: vec![
                Payload::Err(ErrorPayload {
                    code: ErrorCode::InvalidTs,
                }),
                Payload::Err(ErrorPayload {
                    code: ErrorCode::Unspecified,
                }),
            ],
        },
    ];
    // Varied lengths and orders.
    let mut g = Lcg(0x006d_696b_6579);
    for i in 0..40 {
        let mut payloads = Vec::new();
        for _ in 0..g.below(6) {
            payloads.push(match g.below(8) {
                0 => Payload::Kemac(Kemac {
                    encr_alg: EncrAlg::AesKw128,
                    encr_data: g.bytes(200),
                    mac: if g.below(2) == 0 {
                        Mac::Null
                    } else {
                        Mac::HmacSha1_160([7; 20])
                    },
                }),
                1 => Payload::Pke(Pke {
                    cache: PkeCache::NoCache,
                    data: g.bytes(300),
                }),
                2 => Payload::T(Timestamp::Counter(u32::try_from(g.next()).unwrap())),
                3 => Payload::Id(Id {
                    id_type: IdType::Nai,
                    data: b"node-"
                        .iter()
                        .copied()
                        .chain(b"x".repeat(g.below(40)))
                        .collect(),
                }),
                4 => Payload::V(Verification { mac: Mac::Null }),
                5 => Payload::Rand(Rand { data: g.bytes(255) }),
                6 => Payload::GeneralExt(GeneralExt {
                    ext_type: 0,
                    data: g.bytes(100),
                }),
                _ => Payload::Err(ErrorPayload {
                    code: ErrorCode::ALL[g.below(13)],
                }),
            });
        }
        if g.below(2) == 0 {
            payloads.push(Payload::Sign(Sign {
                s_type: SignType::Pss,
                signature: g.bytes(600),
            }));
        }
        out.push(Message {
            header: header(DataType::ALL[g.below(7)], i % 4),
            payloads,
        });
    }
    out
}

/// The next-payload values the dissector should report, in order (SIGN has none).
fn expected_chain(m: &Message) -> Vec<u8> {
    let mut chain = vec![
        m.payloads
            .first()
            .map_or(payload_type::LAST, Payload::type_code),
    ];
    for (i, p) in m.payloads.iter().enumerate() {
        if !matches!(p, Payload::Sign(_)) {
            chain.push(
                m.payloads
                    .get(i + 1)
                    .map_or(payload_type::LAST, Payload::type_code),
            );
        }
    }
    chain
}

#[test]
fn tshark_dissects_our_messages() {
    if !available("tshark") || !available("text2pcap") {
        eprintln!("tshark or text2pcap not installed: skipping the Wireshark cross-check");
        return;
    }
    let msgs = messages();
    let dir = std::env::temp_dir().join(format!("m2msec-mikey-tshark-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text: PathBuf = dir.join("msgs.txt");
    let pcap: PathBuf = dir.join("msgs.pcap");
    let mut dump = String::new();
    for m in &msgs {
        let bytes = m.encode().unwrap();
        assert_eq!(&Message::decode(&bytes).unwrap(), m);
        dump.push_str("0000");
        for b in bytes {
            dump.push_str(&format!(" {b:02x}"));
        }
        dump.push('\n');
    }
    std::fs::write(&text, dump).unwrap();
    let st = Command::new("text2pcap")
        .args(["-q", "-u", "2269,2269"])
        .arg(&text)
        .arg(&pcap)
        .status()
        .unwrap();
    assert!(st.success());
    let out = Command::new("tshark")
        .args(["-r"])
        .arg(&pcap)
        .args([
            "-T",
            "fields",
            "-E",
            "occurrence=a",
            "-E",
            "separator=|",
            "-e",
            "mikey.type",
            "-e",
            "mikey.csb_id",
            "-e",
            "mikey.next_payload",
            "-e",
            "_ws.malformed",
            "-e",
            "_ws.expert",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), msgs.len(), "{stdout}");
    for (m, line) in msgs.iter().zip(lines) {
        let f: Vec<&str> = line.split('|').collect();
        assert_eq!(f[0], m.header.data_type.code().to_string(), "{line}");
        assert_eq!(f[1], format!("0x{:08x}", m.header.csb_id), "{line}");
        let chain: Vec<u8> = f[2].split(',').map(|v| v.parse().unwrap()).collect();
        assert_eq!(chain, expected_chain(m), "{line}");
        assert!(
            f[3].is_empty() && f[4].is_empty(),
            "dissector complained: {line}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
