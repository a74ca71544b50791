//! Keeps the byte-level examples of `docs/PROTOCOL.md` true: a real in-process server (seeded ids,
//! a manual clock, so the bytes are the same on every run) is sent the documented consume frame
//! and consume-once frame, and the hex dumps of those frames and of the server's answers must be
//! the ones in the document.
//!
//! When the format changes on purpose, `LEASEHOLD_BLESS=1 cargo test --release --test
//! tcp_wire_example` rewrites the example in the document.

use leasehold::client::{Consume, Dialect, TokenChoice};
use leasehold::{
    ConsumerKind, Credit, Dimension, Enforcement, Engine, LicenseeKind, ManualClock, NewConsumer, NewLicense,
    NewLicensee, NewProduct, Timestamp,
};
use leasehold_engine::ids::SeededIds;
use leasehold_engine::signer::UnsignedTokens;
use leasehold_transports::tcp::messages::{self, Authenticate, ConsumeOnce, Credential, Request, Response};
use leasehold_transports::tcp::{self, frame, TcpConfig, TcpState};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

/// The markers around each example the test writes.
const EXAMPLES: [(&str, &str); 2] = [
    ("<!-- consume-example:begin (written by tests/tcp_wire_example.rs) -->", "<!-- consume-example:end -->"),
    ("<!-- consume-once-example:begin (written by tests/tcp_wire_example.rs) -->", "<!-- consume-once-example:end -->"),
];

/// `bytes` as `xxd` shows them: offset, 16 bytes in hex, the printable ones as text.
fn hex_dump(bytes: &[u8]) -> String {
    let mut out = String::new();
    for (row, chunk) in bytes.chunks(16).enumerate() {
        let hex: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
        let text: String = chunk.iter().map(|b| if b.is_ascii_graphic() { char::from(*b) } else { '.' }).collect();
        out.push_str(&format!("{:08x}  {:<48}  {text}\n", row * 16, hex.join(" ")));
    }
    out
}

/// One frame off `stream`, whole, header included.
fn read_frame(stream: &mut std::net::TcpStream) -> Vec<u8> {
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix).expect("a length prefix");
    let mut rest = vec![0u8; u32::from_be_bytes(prefix) as usize];
    stream.read_exact(&mut rest).expect("the frame");
    [prefix.to_vec(), rest].concat()
}

fn frame_of(request_id: u32, request: &Request) -> Vec<u8> {
    let mut buf = bytes::BytesMut::new();
    frame::encode(messages::PROTOCOL_VERSION, request_id, &messages::encode(request).expect("encodes"), &mut buf);
    buf.to_vec()
}

/// The frames of the examples and the server's answers, byte for byte.
struct Exchange {
    consume: Vec<u8>,
    answer: Vec<u8>,
    consume_once: Vec<u8>,
    answer_once: Vec<u8>,
}

fn exchange() -> Exchange {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let clock = Arc::new(ManualClock::starting_at(Timestamp::from_secs(1_798_761_600))); // 2027-01-01
    let engine = Engine::builder().clock(clock).ids(Arc::new(SeededIds::new(6))).workers(1).build().expect("an engine");
    let api_key = rt.block_on(async {
        engine.create_product(NewProduct { name: "ThreeDee".into(), features: vec![], tiers: vec![] }).await.unwrap();
        let licensee = NewLicensee { name: "Acme".into(), kind: LicenseeKind::Organization, external_id: None };
        let licensee = engine.create_licensee(licensee).await.unwrap();
        let seats = Credit { dimension: Dimension::Seats, qty: 3, enforcement: Enforcement::Enforced };
        engine.create_license(NewLicense::new(licensee.id, "ThreeDee", seats)).await.unwrap();
        let consumer = NewConsumer {
            name: "ada".into(),
            kind: ConsumerKind::User,
            licensees: vec![licensee.id],
            email: None,
            external_id: None,
        };
        engine.create_consumer(consumer).await.unwrap().1
    });
    let state = Arc::new(TcpState {
        engine,
        signer: Arc::new(UnsignedTokens),
        issuer: "https://licenses.example.com".into(),
        keys: None,
        trusted_proxies: Default::default(),
    });
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("a port");
    let addr = listener.local_addr().expect("an address");
    rt.spawn(tcp::serve(listener, state, TcpConfig::default(), None, std::future::pending()));
    let _serving = std::thread::spawn(move || rt.block_on(std::future::pending::<()>()));

    let mut stream = std::net::TcpStream::connect(addr).expect("connects");
    let hello = Authenticate { credential: Credential::ApiKey(api_key), dialect: Dialect::Enterprise };
    stream.write_all(&frame_of(1, &Request::Authenticate(hello))).expect("writes");
    let authenticated = read_frame(&mut stream);
    assert!(matches!(
        messages::decode::<Response>(&authenticated[frame::HEADER_BYTES..]),
        Ok(Response::Authenticated(_))
    ));

    let consume = frame_of(7, &Request::Consume(Consume::new("ThreeDee").hw("hw-1").token(TokenChoice::Omit)));
    stream.write_all(&consume).expect("writes");
    let answer = read_frame(&mut stream);
    assert!(matches!(messages::decode::<Response>(&answer[frame::HEADER_BYTES..]), Ok(Response::Granted(_))));

    let once = ConsumeOnce {
        idempotency_key: "order-1".into(),
        consume: Consume::new("ThreeDee").hw("hw-2").token(TokenChoice::Omit),
    };
    let consume_once = frame_of(8, &Request::ConsumeOnce(once.clone()));
    stream.write_all(&consume_once).expect("writes");
    let answer_once = read_frame(&mut stream);
    let granted = |frame: &[u8]| match messages::decode::<Response>(&frame[frame::HEADER_BYTES..]) {
        Ok(Response::Granted(granted)) => granted.lease_id,
        other => panic!("a grant: {other:?}"),
    };
    // The retry, with another request id, is answered with the first lease.
    stream.write_all(&frame_of(9, &Request::ConsumeOnce(once))).expect("writes");
    assert_eq!(granted(&read_frame(&mut stream)), granted(&answer_once));
    Exchange { consume, answer, consume_once, answer_once }
}

#[test]
fn the_documented_frames_and_their_answers_are_what_the_server_exchanges() {
    let exchange = exchange();
    let examples = [
        format!(
            "The consume request (request id 7):\n\n```text\n{}```\n\nThe server's answer:\n\n```text\n{}```",
            hex_dump(&exchange.consume),
            hex_dump(&exchange.answer)
        ),
        format!(
            "The consume-once request (request id 8):\n\n```text\n{}```\n\nThe server's answer (a retry gets the same \
             lease):\n\n```text\n{}```",
            hex_dump(&exchange.consume_once),
            hex_dump(&exchange.answer_once)
        ),
    ];
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/PROTOCOL.md");
    let mut document = std::fs::read_to_string(&path).expect("docs/PROTOCOL.md");
    let bless = std::env::var_os("LEASEHOLD_BLESS").is_some();
    for ((begin, end), example) in EXAMPLES.iter().zip(examples) {
        let example = format!("{begin}\n{example}\n{end}");
        let (Some(start), Some(stop)) = (document.find(begin), document.find(end)) else {
            panic!("docs/PROTOCOL.md lacks the example markers {begin} ... {end}");
        };
        let current = document[start..stop + end.len()].to_owned();
        if bless {
            document = document.replacen(&current, &example, 1);
        } else {
            assert_eq!(
                current, example,
                "docs/PROTOCOL.md's example is stale; rerun with LEASEHOLD_BLESS=1 to rewrite it"
            );
        }
    }
    if bless {
        std::fs::write(&path, document).expect("docs/PROTOCOL.md is writable");
    }
}
