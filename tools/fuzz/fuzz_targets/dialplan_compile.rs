//! Fuzzes the dialplan parser and compiler: any bytes, read as the root file of a plan
//! (and as every file it includes), either compile or give a report that renders; a
//! compiled plan evaluates and runs its own tests. Nothing may panic.

#![no_main]

use std::path::Path;

use chrono::{DateTime, Utc};
use libfuzzer_sys::fuzz_target;
use vigie::dialplan::{CallFacts, compile, evaluate, run_tests};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let queues = ["line19".to_owned(), "admin".to_owned()];
    let mut read = |_: &Path| Ok(text.to_owned());
    match compile(Path::new("fuzz.toml"), &mut read, &queues) {
        Ok(plan) => {
            let facts = CallFacts {
                called: "19".into(),
                caller: Some("0612345678".into()),
                source: Some([192, 0, 2, 10].into()),
                headers: vec![("X-Trunk".into(), "iam".into())],
                has_location: true,
            };
            let at = DateTime::<Utc>::from_timestamp(1_772_467_200, 0).unwrap_or_default();
            let _ = evaluate(&plan, &facts, at);
            let _ = run_tests(&plan);
        }
        Err(report) => {
            let _ = report.render(false);
        }
    }
});
