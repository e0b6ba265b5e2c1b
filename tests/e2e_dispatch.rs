//! Hand-off to dispatch end to end (DESIGN §4): real SIPp calls through vigie, a dispatch
//! webhook and a location server (LIS) run by the test (axum on the test's own loopback
//! address), the SSE stream, the REST view, the transactional outbox across a webhook outage
//! and a vigie restart, and the AML endpoint over TLS.

mod pgcluster;
mod support;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use serde_json::Value;
use support::*;

/// Port of the test's webhook + LIS server on the test's loopback address.
const HOOK_PORT: u16 = 9090;
/// Port of vigie's AML endpoint on the test's loopback address.
const AML_PORT: u16 = 8443;

/// The PIDF-LO the test's LIS serves at `/loc/1`: a Circle, centre 33.5900 -7.6100, 20 m.
const LIS_PIDF: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf"
    xmlns:gp="urn:ietf:params:xml:ns:pidf:geopriv10"
    xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model"
    xmlns:gml="http://www.opengis.net/gml"
    xmlns:gs="http://www.opengis.net/pidflo/1.0"
    entity="pres:caller@lis.example.org">
  <dm:device id="lis">
    <gp:geopriv>
      <gp:location-info>
        <gs:Circle srsName="urn:ogc:def:crs:EPSG::4326">
          <gml:pos>33.5900 -7.6100</gml:pos>
          <gs:radius uom="urn:ogc:def:uom:EPSG::9001">20</gs:radius>
        </gs:Circle>
      </gp:location-info>
      <gp:usage-rules/>
      <gp:method>Cell</gp:method>
    </gp:geopriv>
  </dm:device>
</presence>
"#;

/// What the webhook received: (Idempotency-Key header, document), in arrival order.
type Received = Arc<Mutex<Vec<(String, Value)>>>;

async fn hook(State(got): State<Received>, headers: HeaderMap, body: String) -> StatusCode {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let Ok(doc) = serde_json::from_str::<Value>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    if let Ok(mut g) = got.lock() {
        g.push((key, doc));
    }
    StatusCode::NO_CONTENT
}

/// Starts the webhook (`POST /hook`) and LIS (`GET /loc/1`) on `addr` in `rt`.
fn start_dispatch(rt: &tokio::runtime::Runtime, addr: SocketAddr, got: Received) {
    let app = Router::new()
        .route("/hook", post(hook))
        .route(
            "/loc/1",
            get(|| async { ([("content-type", "application/pidf+xml")], LIS_PIDF) }),
        )
        .with_state(got);
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(addr))
        .expect("bind the test's dispatch server");
    rt.spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn dispatch_config(ip: Ipv4Addr) -> String {
    format!(
        "{MD5_ONLY}[dispatch]\nwebhook_url = \"http://{ip}:{HOOK_PORT}/hook\"\n\
         retry_min_ms = 100\nretry_max_ms = 1000\ngeoref_timeout_ms = 2000\n"
    )
}

/// Polls `got` until `pred` holds, up to `limit`.
fn wait_docs(
    got: &Received,
    v: &Vigie,
    limit: Duration,
    what: &str,
    pred: impl Fn(&[(String, Value)]) -> bool,
) {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(g) = got.lock()
            && pred(&g)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; got {:?}; vigie log:\n{}",
            got.lock().map(|g| g
                .iter()
                .map(|(k, d)| (k.clone(), d["event"].clone()))
                .collect::<Vec<_>>()),
            v.proc.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn has_ended(docs: &[(String, Value)]) -> bool {
    docs.iter().any(|(_, d)| d["event"] == "ended")
}

/// Shapes and centres of a document's locations, in order.
fn shapes(doc: &Value) -> Vec<(String, String, f64, f64)> {
    doc["locations"]
        .as_array()
        .map(|ls| {
            ls.iter()
                .map(|l| {
                    (
                        l["shape"].as_str().unwrap_or_default().to_owned(),
                        l["source"]["kind"].as_str().unwrap_or_default().to_owned(),
                        l["lat"].as_f64().unwrap_or(f64::NAN),
                        l["lon"].as_f64().unwrap_or(f64::NAN),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn locations_by_value_by_reference_and_updated_reach_webhook_sse_and_rest_in_order() {
    let ip = unique_loopback();
    let rt = runtime();
    let got: Received = Arc::default();
    start_dispatch(&rt, SocketAddr::from((ip, HOOK_PORT)), Arc::clone(&got));
    // The line-19 plan of the tests, with a variable and a tag for the hand-off document.
    let plan = TEST_PLAN.replace(
        "steps = [{ ring = 180 },",
        "steps = [{ ring = 180 }, { set = { service = \"police-19\" } }, { tag = \"emergency\" },",
    );
    assert_ne!(plan, TEST_PLAN, "the test plan changed shape");
    let mut v = Vigie::start_with_plan(ip, &dispatch_config(ip), &plan);

    // SSE subscriber, before the call. reqwest is built without a default TLS provider
    // (as vigie is): install one, whichever test of this binary runs first.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sse_ids: Arc<Mutex<Vec<String>>> = Arc::default();
    {
        let sse_ids = Arc::clone(&sse_ids);
        let url = format!("http://{ip}:{VIGIE_HTTP}/api/v1/events");
        rt.spawn(async move {
            let Ok(mut resp) = reqwest::get(url).await else {
                return;
            };
            let mut text = String::new();
            while let Ok(Some(chunk)) = resp.chunk().await {
                text.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = text.find('\n') {
                    let line: String = text.drain(..=end).collect();
                    if let Some(id) = line.trim_end().strip_prefix("id: ")
                        && let Ok(mut ids) = sse_ids.lock()
                    {
                        ids.push(id.to_owned());
                    }
                }
            }
        });
    }
    std::thread::sleep(Duration::from_millis(300));

    let mut seat = echo_seat(&v);
    let georef = format!("http://{ip}:{HOOK_PORT}/loc/1");
    let mut trunk = trunk_sipp(
        &v,
        "trunk",
        "trunk_location_ref.xml",
        TRUNK_SIP,
        TRUNK_MEDIA,
        &[
            "-m",
            "1",
            "-d",
            "1000",
            "-timeout",
            "20",
            "-trace_err",
            "-key",
            "georef",
            &georef,
        ],
    );
    // While the call lasts it is listed as active.
    let deadline = Instant::now() + Duration::from_secs(10);
    let active = loop {
        let list: Value = v
            .http_get("/api/v1/calls?active=true")
            .and_then(|b| serde_json::from_str(&b).ok())
            .unwrap_or(Value::Null);
        if list.as_array().is_some_and(|a| a.len() == 1) {
            break list;
        }
        assert!(Instant::now() < deadline, "no active call listed: {list}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(active[0]["called"], "19");
    assert_one_good_call(&mut trunk, &v, Duration::from_secs(20));
    assert_one_good_call(&mut seat, &v, Duration::from_secs(20));
    wait_docs(
        &got,
        &v,
        Duration::from_secs(15),
        "the ended document",
        has_ended,
    );

    let docs = got.lock().map(|g| g.clone()).unwrap_or_default();
    let call_id = docs[0].1["call"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    // In order, each once, numbered from 1, header = body key.
    for (i, (key, doc)) in docs.iter().enumerate() {
        let seq = i + 1;
        assert_eq!(doc["sequence"], seq, "docs: {docs:?}");
        assert_eq!(key, &format!("{call_id}:{seq}"));
        assert_eq!(doc["idempotency_key"], key.as_str());
        assert_eq!(doc["version"], 1);
    }
    let events: Vec<&str> = docs
        .iter()
        .map(|(_, d)| d["event"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(events.first(), Some(&"received"), "{events:?}");
    assert_eq!(events.last(), Some(&"ended"), "{events:?}");
    assert_eq!(
        events.iter().filter(|e| **e == "answered").count(),
        1,
        "{events:?}"
    );
    // The fetched LIS location and the UPDATE's: two location updates.
    assert_eq!(
        events.iter().filter(|e| **e == "location_update").count(),
        2,
        "{events:?}"
    );
    let received = &docs[0].1;
    assert_eq!(received["call"]["caller"]["number"], "+212600001");
    assert_eq!(received["call"]["called_number"], "19");
    assert_eq!(received["queue"]["name"], "line19");
    assert!(
        received["tags"]
            .as_array()
            .is_some_and(|t| t.iter().any(|x| x == "geolocation_routing:yes")),
        "{received}"
    );
    let last = &docs[docs.len() - 1].1;
    assert_eq!(last["route"], "line19", "{last}");
    assert_eq!(last["vars"]["service"], "police-19", "{last}");
    assert!(
        last["tags"]
            .as_array()
            .is_some_and(|t| t.iter().any(|x| x == "emergency")),
        "{last}"
    );
    assert_eq!(last["agent"]["seat"], "agent01");
    assert_eq!(last["outcome"], "answered");
    let s = shapes(last);
    assert_eq!(s.len(), 4, "{s:?}");
    assert_eq!(
        (s[0].0.as_str(), s[0].1.as_str(), s[0].2, s[0].3),
        ("circle", "pidf_lo", 33.5731, -7.5898)
    );
    assert_eq!(
        (s[1].0.as_str(), s[1].1.as_str()),
        ("reference", "reference")
    );
    assert_eq!(last["locations"][1]["reference"], georef.as_str());
    assert_eq!((s[2].0.as_str(), s[2].2, s[2].3), ("circle", 33.59, -7.61));
    assert_eq!(last["locations"][2]["radius_m"], 20.0);
    assert_eq!((s[3].0.as_str(), s[3].2, s[3].3), ("point", 33.6, -7.6));
    // Never overwritten: every document's locations are a prefix of the next one's.
    for pair in docs.windows(2) {
        let (a, b) = (shapes(&pair[0].1), shapes(&pair[1].1));
        assert!(
            a.len() <= b.len() && a.iter().zip(&b).all(|(x, y)| x.0 == y.0 && x.1 == y.1),
            "{a:?} then {b:?}"
        );
    }
    // REST: the latest document, as delivered.
    let rest: Value = v
        .http_get(&format!("/api/v1/calls/{call_id}"))
        .and_then(|b| serde_json::from_str(&b).ok())
        .unwrap_or(Value::Null);
    assert_eq!(&rest, last);
    let active: Value = v
        .http_get("/api/v1/calls?active=true")
        .and_then(|b| serde_json::from_str(&b).ok())
        .unwrap_or(Value::Null);
    assert_eq!(active, serde_json::json!([]));
    // SSE: the same documents, in the same order.
    let keys: Vec<String> = docs.iter().map(|(k, _)| k.clone()).collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    while sse_ids.lock().map(|i| i.len()).unwrap_or(0) < keys.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(sse_ids.lock().map(|i| i.clone()).unwrap_or_default(), keys);
    v.stop();
    // Journal: every location with its source, appended.
    let id = ulid::Ulid::from_string(&call_id).expect("call id");
    let locs = journal_locations(&v.db_path(), id);
    let sources: Vec<(&str, &str)> = locs
        .iter()
        .map(|l| (l.source.as_str(), l.shape.as_str()))
        .collect();
    assert_eq!(
        sources,
        [
            ("pidf-lo", "circle"),
            ("geolocation-uri", "reference"),
            ("geolocation-uri", "circle"),
            ("pidf-lo", "point")
        ]
    );
    rt.shutdown_timeout(Duration::from_secs(1));
}

#[test]
fn webhook_down_30_s_across_a_restart_gets_every_document_exactly_once_on_sqlite() {
    outage_and_restart(None);
}

#[test]
fn webhook_down_30_s_across_a_restart_gets_every_document_exactly_once_on_postgresql() {
    let pg = pgcluster::PgCluster::start();
    let url = pg.database("vigie");
    outage_and_restart(Some(&url));
    drop(pg);
}

/// A call while the webhook is down, vigie restarted, the webhook back 30 s after the
/// outage began: each document delivered once, in order. `store_url`: the `[store] url`
/// (PostgreSQL), else the SQLite file.
fn outage_and_restart(store_url: Option<&str>) {
    let ip = unique_loopback();
    let rt = runtime();
    let got: Received = Arc::default();
    let down_since = Instant::now();
    // The webhook is down: nothing listens on its port yet. The extra configuration lands
    // in [store] until its first table header.
    let store = store_url
        .map(|u| format!("url = \"{u}\"\n"))
        .unwrap_or_default();
    let mut v = Vigie::start(ip, &format!("{store}{}", dispatch_config(ip)));
    let mut seat = echo_seat(&v);
    let mut trunk = trunk_call(&v, "trunk", "trunk_location.xml", 500);
    assert_one_good_call(&mut trunk, &v, Duration::from_secs(20));
    assert_one_good_call(&mut seat, &v, Duration::from_secs(20));
    let calls: Value = v
        .http_get("/api/v1/calls")
        .and_then(|b| serde_json::from_str(&b).ok())
        .unwrap_or(Value::Null);
    let call_id = calls[0]["id"].as_str().unwrap_or_default().to_owned();
    // The latest document is there (REST) though never delivered.
    let deadline = Instant::now() + Duration::from_secs(10);
    while v
        .http_get(&format!("/api/v1/calls/{call_id}"))
        .and_then(|b| serde_json::from_str::<Value>(&b).ok())
        .is_none_or(|d| d["event"] != "ended")
    {
        assert!(
            Instant::now() < deadline,
            "no ended document; log:\n{}",
            v.proc.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    v.restart();
    // Down for 30 s in all, then up.
    let up_at = down_since + Duration::from_secs(30);
    std::thread::sleep(up_at.saturating_duration_since(Instant::now()));
    assert!(got.lock().map(|g| g.is_empty()).unwrap_or(false));
    start_dispatch(&rt, SocketAddr::from((ip, HOOK_PORT)), Arc::clone(&got));
    wait_docs(
        &got,
        &v,
        Duration::from_secs(20),
        "the ended document",
        has_ended,
    );
    // A little longer: nothing is sent twice.
    std::thread::sleep(Duration::from_millis(1500));
    let docs = got.lock().map(|g| g.clone()).unwrap_or_default();
    let mut per_key: BTreeMap<String, usize> = BTreeMap::new();
    for (k, _) in &docs {
        *per_key.entry(k.clone()).or_default() += 1;
    }
    let events: Vec<&str> = docs
        .iter()
        .map(|(_, d)| d["event"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(events, ["received", "answered", "ended"], "{docs:?}");
    let expected: BTreeMap<String, usize> =
        (1..=3).map(|s| (format!("{call_id}:{s}"), 1)).collect();
    assert_eq!(per_key, expected);
    v.stop();
    rt.shutdown_timeout(Duration::from_secs(1));
}

/// An AML SMS (ETSI TS 103 625 §7) whose `ml` is its real length (2-digit lengths).
fn sms_text() -> String {
    let head =
        "A\"ML=1;lt=+33.50000;lg=-7.50000;rd=30;top=20260101000000;lc=68;pm=G;mcc=604;mnc=01;ml=";
    format!("{head}{}", head.len() + 2)
}

#[test]
fn aml_over_tls_is_matched_to_the_live_call_and_an_unmatched_report_kept() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ip = unique_loopback();
    let rt = runtime();
    let got: Received = Arc::default();
    start_dispatch(&rt, SocketAddr::from((ip, HOOK_PORT)), Arc::clone(&got));
    let tls_dir = tempfile::tempdir().expect("tempdir");
    let cert =
        rcgen::generate_simple_self_signed(vec![ip.to_string()]).expect("self-signed certificate");
    let cert_pem = cert.cert.pem();
    let (cert_path, key_path) = (
        tls_dir.path().join("aml.crt"),
        tls_dir.path().join("aml.key"),
    );
    std::fs::write(&cert_path, &cert_pem).expect("write cert");
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).expect("write key");
    let config = format!(
        "{}[aml]\nlisten = \"{ip}:{AML_PORT}\"\ncert_path = \"{}\"\nkey_path = \"{}\"\n",
        dispatch_config(ip),
        cert_path.display(),
        key_path.display()
    );
    let mut v = Vigie::start(ip, &config);
    let mut seat = echo_seat(&v);
    let mut trunk = trunk_call(&v, "trunk", "trunk_location.xml", 4000);
    wait_docs(
        &got,
        &v,
        Duration::from_secs(10),
        "the answered document",
        |d| d.iter().any(|(_, d)| d["event"] == "answered"),
    );
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(cert_pem.as_bytes()).expect("cert")])
        .build()
        .expect("client");
    let url = format!("https://{ip}:{AML_PORT}/aml");
    let (form, sms, garbage) = rt.block_on(async {
        let form = client
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("v=3&device_number=%2B212600001&location_latitude=33.5801&location_longitude=-7.6012&location_accuracy=12&location_source=GPS&location_certainty=68")
            .send()
            .await;
        let form = match form {
            Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
            Err(e) => (0, e.to_string()),
        };
        let sms = client
            .post(format!("{url}?sender=%2B212699999999"))
            .header("content-type", "text/plain")
            .body(sms_text())
            .send()
            .await;
        let sms = match sms {
            Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
            Err(e) => (0, e.to_string()),
        };
        let garbage = client.post(&url).body("hello").send().await.map(|r| r.status().as_u16()).unwrap_or(0);
        (form, sms, garbage)
    });
    assert_one_good_call(&mut trunk, &v, Duration::from_secs(20));
    assert_one_good_call(&mut seat, &v, Duration::from_secs(20));
    wait_docs(
        &got,
        &v,
        Duration::from_secs(15),
        "the ended document",
        has_ended,
    );
    let docs = got.lock().map(|g| g.clone()).unwrap_or_default();
    let call_id = docs[0].1["call"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(
        form.0,
        200,
        "form answer: {form:?}; log:\n{}",
        v.proc.log_text()
    );
    let form_body: Value = serde_json::from_str(&form.1).unwrap_or(Value::Null);
    assert_eq!(form_body["matched"], call_id.as_str());
    assert_eq!(sms.0, 202, "sms answer: {sms:?}");
    assert_eq!(garbage, 400);
    let events: Vec<&str> = docs
        .iter()
        .map(|(_, d)| d["event"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(
        events,
        ["received", "answered", "location_update", "ended"],
        "{docs:?}"
    );
    let s = shapes(&docs[3].1);
    assert_eq!(s.len(), 2, "{s:?}");
    assert_eq!(
        (s[1].0.as_str(), s[1].1.as_str(), s[1].2, s[1].3),
        ("circle", "aml_https", 33.5801, -7.6012)
    );
    assert_eq!(docs[3].1["locations"][1]["radius_m"], 12.0);
    v.stop();
    let reports = rt.block_on(async {
        let store = vigie::store::Store::open_sqlite(v.db_path())
            .await
            .expect("open journal");
        let r = store.aml_reports().await.expect("aml reports");
        store.close().await;
        r
    });
    assert_eq!(reports.len(), 2, "{reports:?}");
    assert_eq!(
        reports[0].call_id.map(|c| c.to_string()),
        Some(call_id.clone())
    );
    assert_eq!(reports[0].sender.as_deref(), Some("+212600001"));
    assert_eq!(reports[1].call_id, None);
    assert_eq!(reports[1].sender.as_deref(), Some("+212699999999"));
    assert_eq!(
        (reports[1].lat, reports[1].lon, reports[1].radius_m),
        (Some(33.5), Some(-7.5), Some(30.0))
    );
    rt.shutdown_timeout(Duration::from_secs(1));
}
