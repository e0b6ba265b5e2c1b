//! No input makes the location layer panic: PIDF-LO, RFC 7852 blocks, `Call-Info`, AML and
//! the hand-off conversion, on corpus files mutated by proptest (byte flips, insertions,
//! deletions, truncation, spliced tags).

use std::path::Path;
use std::sync::OnceLock;

use proptest::prelude::*;
use vigie::dispatch::LocationPart;
use vigie::location::{
    parse_additional_data, parse_aml_https, parse_aml_sms, parse_call_info, parse_pidf,
    resolve_additional_data,
};

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/corpus/location");

/// The XML and AML files of the corpus, read once.
fn seeds() -> &'static Vec<Vec<u8>> {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let mut out = Vec::new();
        for dir in ["pidf", "additional-data", "ecall", "aml"] {
            let mut files: Vec<_> = std::fs::read_dir(Path::new(CORPUS).join(dir))
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == "xml" || e == "txt"))
                .collect();
            files.sort();
            out.extend(files.into_iter().map(|p| std::fs::read(p).unwrap()));
        }
        assert!(out.len() >= 40, "{} seed files", out.len());
        out
    })
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let fragments = prop::sample::select(vec![
        b"<".to_vec(),
        b">".to_vec(),
        b"</gml:pos>".to_vec(),
        b"<gml:pos>1 2 3 4</gml:pos>".to_vec(),
        b"<gml:posList>1 2 3</gml:posList>".to_vec(),
        b" NaN inf -1e999 ".to_vec(),
        b"&#0;&amp;&bogus;".to_vec(),
        b"<![CDATA[x]]>".to_vec(),
        b" uom=\"urn:ogc:def:uom:EPSG::9101\"".to_vec(),
        b" srsName=\"urn:ogc:def:crs:EPSG::4979\"".to_vec(),
        b"\xff\xfe".to_vec(),
        "é".as_bytes().to_vec(),
        b";ml=".to_vec(),
        b"=".to_vec(),
    ]);
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(a, b)| Mutation::Flip(a, b)),
        (any::<usize>(), fragments).prop_map(|(a, f)| Mutation::Insert(a, f)),
        (any::<usize>(), 0usize..64).prop_map(|(a, n)| Mutation::Delete(a, n)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(doc: &mut Vec<u8>, m: &Mutation) {
    let len = doc.len().max(1);
    match m {
        Mutation::Flip(at, b) => {
            if let Some(x) = doc.get_mut(at % len) {
                *x = *b;
            }
        }
        Mutation::Insert(at, bytes) => {
            let at = at % (doc.len() + 1);
            doc.splice(at..at, bytes.iter().copied());
        }
        Mutation::Delete(at, n) => {
            let at = at % len;
            let end = (at + n).min(doc.len());
            if at < end {
                doc.drain(at..end);
            }
        }
        Mutation::Truncate(at) => doc.truncate(at % len),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn mutated_corpus_never_panics(
        seed in any::<prop::sample::Index>(),
        mutations in prop::collection::vec(mutation(), 1..6),
    ) {
        let seeds = seeds();
        let mut doc = seed.get(seeds).clone();
        for m in &mutations {
            apply(&mut doc, m);
        }
        if let Ok(locations) = parse_pidf(&doc) {
            for l in &locations {
                let part = LocationPart::from(l);
                let _ = serde_json::to_string(&part);
            }
        }
        let _ = parse_additional_data(&doc);
        let text = String::from_utf8_lossy(&doc);
        let _ = parse_aml_sms(&text);
        let _ = parse_aml_https(&text);
        let _ = parse_call_info(&text);
        let _ = resolve_additional_data(&text, "multipart/mixed;boundary=b", &doc);
    }
}
