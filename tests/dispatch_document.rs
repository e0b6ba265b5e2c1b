//! The hand-off document (DESIGN §4) against `deploy/handoff.schema.json` (JSON Schema
//! 2020-12): documents built from the location corpus validate, a document with every field
//! set validates and round-trips, and the schema and the struct name the same keys.

use std::path::Path;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Value, json};
use vigie::dispatch::document::Geometry;
use vigie::dispatch::{
    AdditionalDataPart, AgentPart, CallPart, HandoffDocument, HandoffEvent, LocationPart, Outcome,
    Party, QueuePart, ShapeKind, VERSION,
};
use vigie::location::{
    AdditionalDataEntry, Geolocation, Location, Position, from_sip_body, parse_additional_data,
    parse_aml_https, parse_aml_sms, parse_pidf, resolve_additional_data, resolve_geolocation,
};

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/corpus/location");
const SCHEMA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/handoff.schema.json");

fn schema() -> Value {
    serde_json::from_str(&std::fs::read_to_string(SCHEMA).unwrap()).unwrap()
}

fn validator() -> jsonschema::Validator {
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(&schema())
        .expect("schema compiles")
}

fn read(rel: &str) -> Vec<u8> {
    std::fs::read(Path::new(CORPUS).join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 29, h, m, s).unwrap()
}

fn call() -> CallPart {
    CallPart {
        id: "01KB0000000000000000000000".into(),
        sip_call_id: "a84b4c76e66710@192.0.2.4".into(),
        caller: Party {
            number: Some("+212600000001".into()),
            display: Some("Caller".into()),
        },
        called_number: "19".into(),
    }
}

#[track_caller]
fn assert_valid(v: &jsonschema::Validator, doc: &Value) {
    let errors: Vec<String> = v
        .iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}\n{doc:#}");
}

/// A SIP message from the corpus: (Content-Type, Geolocation, Call-Info, body).
fn sip(rel: &str) -> (String, String, String, Vec<u8>) {
    let raw = read(rel);
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let header = |name: &str| {
        head.lines()
            .filter_map(|l| l.split_once(':'))
            .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_owned())
            .collect::<Vec<_>>()
            .join(", ")
    };
    (
        header("Content-Type"),
        header("Geolocation"),
        header("Call-Info"),
        raw[split + 4..].to_vec(),
    )
}

#[test]
fn schema_is_a_valid_2020_12_schema() {
    let s = schema();
    assert_eq!(s["$schema"], "https://json-schema.org/draft/2020-12/schema");
    assert!(jsonschema::meta::is_valid(&s));
    assert_eq!(s["properties"]["version"]["const"], json!(VERSION));
}

#[test]
fn documents_from_every_pidf_and_aml_file_validate() {
    let v = validator();
    let mut seq = 0;
    let mut shapes = std::collections::BTreeSet::new();
    let mut files: Vec<String> = std::fs::read_dir(Path::new(CORPUS).join("pidf"))
        .unwrap()
        .map(|e| format!("pidf/{}", e.unwrap().file_name().to_string_lossy()))
        .collect();
    files.sort();
    files.push("additional-data/PidfLoProvidedByByValue.xml".into());
    files.push("additional-data/PidfLoProvidedByByReference.xml".into());
    let mut all: Vec<LocationPart> = Vec::new();
    for file in &files {
        let locations = parse_pidf(&read(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        seq += 1;
        let mut doc = HandoffDocument::new(
            call(),
            at(10, 0, 0),
            seq,
            HandoffEvent::LocationUpdate,
            at(10, 0, 1),
        );
        doc.locations = locations.iter().map(LocationPart::from).collect();
        // provided-by values become additional data entries.
        for l in &locations {
            if let Some(by) = &l.provided_by {
                doc.additional_data
                    .extend(by.values.iter().map(AdditionalDataPart::from));
            }
        }
        for l in &doc.locations {
            shapes.insert(format!("{:?}", l.shape));
        }
        let json = serde_json::to_value(&doc).unwrap();
        assert_valid(&v, &json);
        all.extend(doc.locations);
    }
    // Every RFC 5491 shape and civic went through the schema.
    assert_eq!(
        shapes.into_iter().collect::<Vec<_>>(),
        vec![
            "ArcBand",
            "Circle",
            "Civic",
            "Ellipse",
            "Ellipsoid",
            "Point",
            "Polygon",
            "Prism",
            "Sphere"
        ]
    );

    // AML: SMS and HTTPS forms.
    let sms = parse_aml_sms(&String::from_utf8(read("aml/aml-sms-v1-gps.txt")).unwrap()).unwrap();
    let https =
        parse_aml_https(&String::from_utf8(read("aml/aml-https-v3-form-body.txt")).unwrap())
            .unwrap();
    let mut doc = HandoffDocument::new(
        call(),
        at(10, 0, 0),
        99,
        HandoffEvent::LocationUpdate,
        at(10, 0, 30),
    );
    doc.locations = [sms.to_location(), https.to_location()]
        .iter()
        .map(LocationPart::from)
        .collect();
    let json = serde_json::to_value(&doc).unwrap();
    assert_valid(&v, &json);
    assert_eq!(json["locations"][0]["source"]["kind"], "aml_sms");
    assert_eq!(json["locations"][1]["source"]["kind"], "aml_https");
    assert_eq!(json["locations"][1]["radius_m"], 10.4);
    assert_eq!(json["locations"][1]["confidence_percent"], 83.0);
    assert_eq!(json["idempotency_key"], "01KB0000000000000000000000:99");
}

#[test]
fn document_from_an_ng911_invite_with_all_additional_data() {
    let v = validator();
    let (ct, geolocation, call_info, body) =
        sip("sip/ng911-invite-all-additional-data-by-value.sip");
    let mut doc = HandoffDocument::new(call(), at(9, 0, 0), 1, HandoffEvent::Received, at(9, 0, 0));
    for g in resolve_geolocation(&geolocation, &ct, &body).unwrap() {
        match g.unwrap() {
            Geolocation::ByValue { locations, .. } => doc
                .locations
                .extend(locations.iter().map(LocationPart::from)),
            Geolocation::ByReference(uri) => doc.locations.push(LocationPart::reference(&uri)),
        }
    }
    let entries: Vec<AdditionalDataEntry> = resolve_additional_data(&call_info, &ct, &body)
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect();
    doc.additional_data = entries.iter().map(AdditionalDataPart::from).collect();
    let json = serde_json::to_value(&doc).unwrap();
    assert_valid(&v, &json);
    assert_eq!(json["locations"][0]["shape"], "civic");
    assert_eq!(json["locations"][0]["civic"]["A3"], "Simi Valley");
    assert_eq!(json["locations"][0]["civic"]["HNO"], "311");
    assert_eq!(json["locations"][1]["shape"], "circle");
    assert_eq!(json["locations"][1]["radius_m"], 50.0);
    assert_eq!(
        json["locations"][1]["source"]["content_id"],
        "8185553333@10.1.11.3"
    );
    assert_eq!(json["additional_data"].as_array().unwrap().len(), 7);
    assert_eq!(
        json["additional_data"][0]["provider_info"]["data_provider_string"],
        "Smith Telecom Inc."
    );
    assert_eq!(
        json["additional_data"][2]["device_info"]["unique_device_ids"][0]["type_of_device_id"],
        "IMEI"
    );
    assert_eq!(
        json["additional_data"][4]["comment"]["comments"][0]["language"],
        "en"
    );
    // NENA blocks are listed by purpose, not decoded.
    assert_eq!(json["additional_data"][5]["purpose"], "NENA-CallerInfo");
    assert!(json["additional_data"][5]["reference"].is_null());

    // By reference: the location URI and the https additional data kept for dereferencing.
    let (ct, geolocation, call_info, body) = sip("sip/sos-invite-two-geolocation-values.sip");
    let mut doc = HandoffDocument::new(call(), at(9, 0, 0), 2, HandoffEvent::Received, at(9, 0, 0));
    for g in resolve_geolocation(&geolocation, &ct, &body).unwrap() {
        match g.unwrap() {
            Geolocation::ByValue { locations, .. } => doc
                .locations
                .extend(locations.iter().map(LocationPart::from)),
            Geolocation::ByReference(uri) => doc.locations.push(LocationPart::reference(&uri)),
        }
    }
    let (.., body2) = sip("sip/sos-invite-circle-by-value.sip");
    let (ct2, _, call_info2, _) = sip("sip/sos-invite-circle-by-value.sip");
    doc.additional_data = resolve_additional_data(&call_info2, &ct2, &body2)
        .unwrap()
        .iter()
        .map(|e| AdditionalDataPart::from(e.as_ref().unwrap()))
        .collect();
    assert!(call_info.is_empty());
    let json = serde_json::to_value(&doc).unwrap();
    assert_valid(&v, &json);
    assert_eq!(json["locations"][1]["shape"], "reference");
    assert_eq!(
        json["locations"][1]["reference"],
        "https://lis.example.com/loc/ab12cd34"
    );
    assert_eq!(
        json["additional_data"][0]["reference"],
        "https://adr.example.com/providerinfo/1"
    );
    // Locations straight from a body, too.
    assert_eq!(from_sip_body(&ct, &body).unwrap().len(), 1);
}

/// A document with every field (and every optional key) set.
fn full_document() -> HandoffDocument {
    let mut doc = HandoffDocument::new(call(), at(8, 0, 0), 4, HandoffEvent::Ended, at(8, 5, 0));
    doc.times.queued = Some(at(8, 0, 2));
    doc.times.answered = Some(at(8, 0, 40));
    doc.times.ended = Some(at(8, 4, 59));
    doc.queue = Some(QueuePart {
        name: "police".into(),
        wait_seconds: Some(38.0),
    });
    doc.agent = Some(AgentPart {
        seat: "seat-07".into(),
    });
    doc.tags = vec!["priority".into()];
    doc.outcome = Some(Outcome::Answered);
    let civic = parse_pidf(&read("pidf/RFC6848Section3.4Example.xml")).unwrap();
    let circle = parse_pidf(&read("pidf/circle-with-confidence-and-provided-by-ref.xml")).unwrap();
    let mut every: Vec<Location> = vec![civic[0].clone(), circle[0].clone()];
    for f in [
        "pidf/RFC5491TupleEllipsoidLocation.xml",
        "pidf/RFC5491TupleArcBandLocation.xml",
        "pidf/RFC5491TuplePrismLocation.xml",
    ] {
        every.extend(parse_pidf(&read(f)).unwrap());
    }
    doc.locations = every.iter().map(LocationPart::from).collect();
    // One location with every geometry key and every optional value set.
    let mut all = LocationPart::from(&circle[0]);
    all.geometry = Geometry {
        semi_major_m: Some(1.0),
        semi_minor_m: Some(1.0),
        vertical_m: Some(1.0),
        orientation_deg: Some(1.0),
        inner_radius_m: Some(1.0),
        outer_radius_m: Some(2.0),
        start_angle_deg: Some(1.0),
        opening_angle_deg: Some(1.0),
        height_m: Some(1.0),
        vertices: vec![Position {
            lat: 1.0,
            lon: 2.0,
            alt_m: Some(3.0),
        }],
    };
    all.alt_m = Some(3.0);
    all.civic = civic[0].shape_civic();
    all.reference = Some("https://lis.example.com/x".into());
    doc.locations.push(all);
    for f in [
        "additional-data/ProvInfo1.xml",
        "additional-data/ServiceInfo1.xml",
        "additional-data/DeviceInfo1.xml",
        "additional-data/SubInfo1.xml",
        "additional-data/Comment1.xml",
    ] {
        let mut part = AdditionalDataPart::from(&parse_additional_data(&read(f)).unwrap());
        part.reference = Some("https://adr.example.com/x".into());
        doc.additional_data.push(part);
    }
    doc
}

trait ShapeCivic {
    fn shape_civic(&self) -> Option<vigie::location::CivicAddress>;
}

impl ShapeCivic for Location {
    fn shape_civic(&self) -> Option<vigie::location::CivicAddress> {
        match &self.shape {
            vigie::location::Shape::Civic(c) => Some((**c).clone()),
            _ => None,
        }
    }
}

#[test]
fn a_document_with_every_field_validates_and_round_trips() {
    let v = validator();
    let doc = full_document();
    let json = serde_json::to_value(&doc).unwrap();
    assert_valid(&v, &json);
    let back: HandoffDocument = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(back, doc);
    assert_eq!(json["version"], 1);
    assert_eq!(json["event"], "ended");
    assert_eq!(json["outcome"], "answered");
    assert_eq!(json["times"]["answered"], "2026-11-29T08:00:40Z");
    assert_eq!(json["queue"]["wait_seconds"], 38.0);
    assert_eq!(json["agent"]["seat"], "seat-07");
    assert_eq!(
        json["locations"][0]["civic"]["extensions"][2]["name"],
        "airport"
    );
    assert_eq!(json["locations"][1]["confidence_pdf"], "normal");
    assert_eq!(json["locations"][1]["retransmission_allowed"], true);
    assert_eq!(json["locations"][2]["shape"], "ellipsoid");
    assert_eq!(json["locations"][2]["geometry"]["vertical_m"], 28.7);
    assert_eq!(json["locations"][3]["shape"], "arc_band");
    assert_eq!(json["locations"][3]["radius_m"], 4148.0);
    assert_eq!(json["locations"][4]["shape"], "prism");
    assert_eq!(
        json["locations"][4]["geometry"]["vertices"]
            .as_array()
            .unwrap()
            .len(),
        5
    );
    assert_eq!(json["locations"][4]["alt_m"], 36.6);
    for (i, key) in [
        "provider_info",
        "service_info",
        "device_info",
        "subscriber_info",
        "comment",
    ]
    .iter()
    .enumerate()
    {
        assert!(json["additional_data"][i][key].is_object(), "{key}");
    }
}

/// The keys the struct writes are exactly the schema's `required` ones (top level, call,
/// times, location, additional data): the two cannot drift apart silently.
#[test]
fn schema_and_struct_name_the_same_keys() {
    let s = schema();
    let json = serde_json::to_value(full_document()).unwrap();
    let keys = |v: &Value| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    let required = |def: &Value| -> Vec<String> {
        let mut k: Vec<String> = def["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap().to_owned())
            .collect();
        k.sort();
        k
    };
    let defs = &s["$defs"];
    for (instance, def) in [
        (&json, &s),
        (&json["call"], &defs["call"]),
        (&json["call"]["caller"], &defs["party"]),
        (&json["times"], &defs["times"]),
        (&json["queue"], &defs["queue"]),
        (&json["agent"], &defs["agent"]),
        (&json["locations"][1], &defs["location"]),
        (&json["locations"][1]["source"], &defs["location_source"]),
        (&json["additional_data"][0], &defs["additional_data"]),
        (
            &json["additional_data"][0]["provider_info"],
            &defs["provider_info"],
        ),
        (
            &json["additional_data"][2]["device_info"],
            &defs["device_info"],
        ),
    ] {
        assert_eq!(keys(instance), required(def), "{instance}");
        assert_eq!(keys(instance), keys(&def["properties"]));
    }
    // Optional-key objects: every key written is a schema property.
    let last = json["locations"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        keys(&last["geometry"]),
        keys(&defs["geometry"]["properties"])
    );
}

#[test]
fn a_missing_required_field_or_a_wrong_value_fails() {
    let v = validator();
    let json = serde_json::to_value(full_document()).unwrap();
    for key in json.as_object().unwrap().keys() {
        let mut broken = json.clone();
        broken.as_object_mut().unwrap().remove(key);
        assert!(!v.is_valid(&broken), "document without {key} validated");
    }
    for (path, key) in [
        ("/call", "sip_call_id"),
        ("/times", "received"),
        ("/locations/1", "radius_m"),
        ("/locations/1", "source"),
        ("/additional_data/0", "purpose"),
    ] {
        let mut broken = json.clone();
        broken
            .pointer_mut(path)
            .unwrap()
            .as_object_mut()
            .unwrap()
            .remove(key);
        assert!(!v.is_valid(&broken), "{path} without {key} validated");
    }
    for (pointer, value) in [
        ("/version", json!(2)),
        ("/event", json!("transferred")),
        ("/times/received", json!("yesterday")),
        ("/locations/1/lat", json!(91.0)),
        ("/locations/1/shape", json!("blob")),
        ("/idempotency_key", json!("no-sequence")),
    ] {
        let mut broken = json.clone();
        *broken.pointer_mut(pointer).unwrap() = value;
        assert!(!v.is_valid(&broken), "{pointer} changed, still valid");
    }
    let mut extra = json.clone();
    extra["unexpected"] = json!(1);
    assert!(!v.is_valid(&extra));
    // The struct refuses what the schema refuses.
    assert!(serde_json::from_value::<HandoffDocument>(extra).is_err());
    let mut no_version = json.clone();
    no_version.as_object_mut().unwrap().remove("version");
    assert!(serde_json::from_value::<HandoffDocument>(no_version).is_err());
}

#[test]
fn idempotency_key_is_call_id_and_sequence() {
    let a = HandoffDocument::new(call(), at(8, 0, 0), 1, HandoffEvent::Received, at(8, 0, 0));
    let b = HandoffDocument::new(call(), at(8, 0, 0), 2, HandoffEvent::Answered, at(8, 1, 0));
    assert_eq!(a.idempotency_key, "01KB0000000000000000000000:1");
    assert_ne!(a.idempotency_key, b.idempotency_key);
    assert_eq!(
        LocationPart::reference("https://x").shape,
        ShapeKind::Reference
    );
}
