//! Caller location against `../shared/corpus/location` (values from its MANIFEST.tsv).

use std::path::{Path, PathBuf};

use vigie::location::additional_data::EntryContent;
use vigie::location::{
    AdditionalData, AdditionalDataEntry, AmlReport, CivicAddress, Confidence, DataReference,
    Geolocation, Location, LocationError, Origin, Pdf, Position, PresenceElement, Shape,
    UsageRules, from_sip_body, parse_additional_data, parse_aml_https, parse_aml_sms, parse_pidf,
    resolve_additional_data, resolve_geolocation, split_multipart,
};

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/corpus/location");
/// Decimal values in the corpus have at most 6 decimals; DMS values are exact to 1/3600°.
const EPS: f64 = 1e-9;

fn read(rel: &str) -> Vec<u8> {
    std::fs::read(Path::new(CORPUS).join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn pidf(rel: &str) -> Vec<Location> {
    parse_pidf(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// A SIP message from the corpus: its headers (unfolded, in order) and its body.
struct Sip {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Sip {
    fn load(rel: &str) -> Self {
        let raw = read(rel);
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|p| (p, p + 4))
            .or_else(|| {
                raw.windows(2)
                    .position(|w| w == b"\n\n")
                    .map(|p| (p, p + 2))
            })
            .expect("blank line between headers and body");
        let head = String::from_utf8_lossy(&raw[..split.0]).into_owned();
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in head.lines().skip(1) {
            if line.starts_with([' ', '\t']) {
                if let Some(last) = headers.last_mut() {
                    last.1.push(' ');
                    last.1.push_str(line.trim());
                }
            } else if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_owned(), value.trim().to_owned()));
            }
        }
        Sip {
            headers,
            body: raw[split.1..].to_vec(),
        }
    }

    /// All values of a header (compact form `c` for Content-Type), joined by ", ".
    fn header(&self, name: &str) -> String {
        self.headers
            .iter()
            .filter(|(n, _)| {
                n.eq_ignore_ascii_case(name)
                    || (name.eq_ignore_ascii_case("content-type") && n.eq_ignore_ascii_case("c"))
            })
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn locations(&self) -> Result<Vec<Location>, LocationError> {
        from_sip_body(&self.header("Content-Type"), &self.body)
    }

    fn geolocation(&self) -> Vec<Result<Geolocation, LocationError>> {
        resolve_geolocation(
            &self.header("Geolocation"),
            &self.header("Content-Type"),
            &self.body,
        )
        .expect("body splits")
    }
}

#[track_caller]
fn assert_point(l: &Location, lat: f64, lon: f64, alt: Option<f64>) {
    let Shape::Point {
        lat: a,
        lon: o,
        alt_m,
    } = &l.shape
    else {
        panic!("expected Point, got {:?}", l.shape);
    };
    assert!((a - lat).abs() < EPS, "lat {a} != {lat}");
    assert!((o - lon).abs() < EPS, "lon {o} != {lon}");
    match (alt_m, alt) {
        (None, None) => {}
        (Some(x), Some(y)) => assert!((x - y).abs() < EPS, "alt {x} != {y}"),
        (x, y) => panic!("alt {x:?} != {y:?}"),
    }
}

#[track_caller]
fn assert_circle(l: &Location, lat: f64, lon: f64, radius: f64) {
    let Shape::Circle {
        lat: a,
        lon: o,
        radius_m,
    } = &l.shape
    else {
        panic!("expected Circle, got {:?}", l.shape);
    };
    assert!((a - lat).abs() < EPS, "lat {a} != {lat}");
    assert!((o - lon).abs() < EPS, "lon {o} != {lon}");
    assert!(
        (radius_m - radius).abs() < EPS,
        "radius {radius_m} != {radius}"
    );
}

#[track_caller]
fn civic(l: &Location) -> &CivicAddress {
    match &l.shape {
        Shape::Civic(c) => c,
        other => panic!("expected a civic address, got {other:?}"),
    }
}

#[test]
fn rfc4119_legacy_point_in_dms() {
    let l = pidf("pidf/RFC5491TuplePointLocation.xml");
    assert_eq!(l.len(), 1);
    // 37:46:30N 122:25:10W
    assert_point(
        &l[0],
        37.0 + 46.0 / 60.0 + 30.0 / 3600.0,
        -(122.0 + 25.0 / 60.0 + 10.0 / 3600.0),
        None,
    );
    // The MANIFEST's rounded decimal values.
    let Shape::Point { lat, lon, .. } = l[0].shape else {
        unreachable!("checked above")
    };
    assert!((lat - 37.775).abs() < 1e-9, "{lat}");
    assert!((lon - -122.41944).abs() < 1e-5, "{lon}");
    assert_eq!(l[0].timestamp.as_deref(), Some("2003-06-22T20:57:29Z"));
    assert_eq!(l[0].source.element, PresenceElement::Tuple);
    assert_eq!(l[0].source.id.as_deref(), Some("sg89ae"));
}

#[test]
fn rfc5491_points_2d_and_3d() {
    let l = pidf("pidf/rfc5491-point-2d.xml");
    assert_eq!(l.len(), 1);
    assert_point(&l[0], -34.407, 150.883, None);
    let l = pidf("pidf/rfc5491-point-3d.xml");
    assert_eq!(l.len(), 1);
    assert_point(&l[0], -34.407, 150.883, Some(24.8));
    assert_eq!(l[0].method.as_deref(), Some("Wiremap"));
    assert_eq!(l[0].timestamp.as_deref(), Some("2007-06-22T20:57:29Z"));
}

#[test]
fn circles() {
    let l = pidf("pidf/RFC5491TupleCircleLocation.xml");
    assert_eq!(l.len(), 1);
    assert_circle(&l[0], 42.5463, -73.2512, 850.24);
    assert_eq!(l[0].method.as_deref(), Some("OTDOA"));

    // UTF-8 BOM, <method> in the pidf namespace, dynamic data beside the shape.
    let l = pidf("pidf/DeviceCircleDynamic1.xml");
    assert_eq!(l.len(), 1);
    assert_circle(&l[0], 42.5463, -73.2512, 100.0);
    assert_eq!(l[0].method.as_deref(), Some("gps"));
    assert_eq!(l[0].timestamp.as_deref(), Some("2009-06-22T20:57:29Z"));
    assert_eq!(l[0].source.element, PresenceElement::Device);
    assert_eq!(l[0].source.id.as_deref(), Some("abc123"));

    for file in [
        "pidf/DeviceCircleLocation.xml",
        "pidf/DeviceCircleWithConfidence.xml",
    ] {
        let l = pidf(file);
        assert_eq!(l.len(), 1, "{file}");
        assert_circle(&l[0], 41.760537, -88.261914, 50.0);
    }

    let l = pidf("pidf/circle-with-confidence-and-provided-by-ref.xml");
    assert_eq!(l.len(), 1);
    assert_circle(&l[0], 48.20849, 16.37208, 35.0);
    assert_eq!(l[0].method.as_deref(), Some("GPS"));
    assert_eq!(l[0].timestamp.as_deref(), Some("2024-05-01T10:15:30Z"));
}

#[test]
fn device_and_person_documents() {
    // gs:Circle with a stray default xmlns=gml: still the pidflo Circle.
    let l = pidf("pidf/DeviceAndPerson.xml");
    assert_eq!(l.len(), 2);
    civic(&l[0]);
    assert_eq!(l[0].source.element, PresenceElement::Device);
    assert_eq!(l[0].method.as_deref(), Some("802.11"));
    assert_eq!(l[0].timestamp.as_deref(), Some("2015-07-09T20:57:29Z"));
    assert_circle(&l[1], 34.247493, -118.791885, 50.0);
    assert_eq!(l[1].source.element, PresenceElement::Person);
    assert_eq!(l[1].source.id.as_deref(), Some("12345"));

    let l = pidf("pidf/PersonDeviceCivicCircleLocation.xml");
    assert_eq!(l.len(), 2);
    civic(&l[0]);
    assert_circle(&l[1], 34.268544, -118.666519, 50.0);

    let l = pidf("pidf/DevicePointLocation.xml");
    assert_eq!(l.len(), 1);
    assert_point(&l[0], 41.772035, -88.473291, None);

    let l = pidf("pidf/rfc6442-device-point-person-civic.xml");
    assert_eq!(l.len(), 2);
    assert_point(&l[0], 32.86726, -97.16054, None);
    assert_eq!(l[0].source.element, PresenceElement::Device);
    civic(&l[1]);
    assert_eq!(l[1].source.element, PresenceElement::Person);

    let l = pidf("additional-data/PidfLoProvidedByByReference.xml");
    assert_eq!(l.len(), 2);
    civic(&l[0]);
    assert_circle(&l[1], 34.247493, -118.791885, 50.0);

    // Dynamic data only: no position must be invented.
    assert!(pidf("pidf/DeviceDynamicOnly1.xml").is_empty());
}

#[test]
fn sip_invites_with_location_by_value() {
    let sip = Sip::load("sip/rfc6442-invite-location-by-value.sip");
    let l = sip.locations().unwrap();
    assert_eq!(l.len(), 2);
    assert_point(&l[0], 32.86726, -97.16054, None);
    civic(&l[1]);
    assert!(
        l.iter()
            .all(|l| l.source.content_id.as_deref() == Some("target123@atlanta.example.com"))
    );
    let g = sip.geolocation();
    assert_eq!(g.len(), 1);
    let Ok(Geolocation::ByValue {
        content_id,
        locations,
    }) = &g[0]
    else {
        panic!("{g:?}");
    };
    assert_eq!(content_id, "target123@atlanta.example.com");
    assert_eq!(locations, &l);

    let sip = Sip::load("sip/sos-invite-circle-by-value.sip");
    let l = sip.locations().unwrap();
    assert_eq!(l.len(), 1);
    assert_circle(&l[0], 48.20849, 16.37208, 35.0);
    assert_eq!(
        l[0].source.content_id.as_deref(),
        Some("handset1@example.com")
    );
    // The SDP part is there for the switch, without the CRLF before the delimiter.
    let parts = split_multipart(&sip.header("Content-Type"), &sip.body).unwrap();
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0].media_type(), "application/sdp");
    assert!(parts[0].body.starts_with(b"v=0\r\n") && parts[0].body.ends_with(b"a=sendrecv"));
    assert_eq!(
        parts[1].content_disposition.as_deref(),
        Some("by-reference;handling=optional")
    );

    // Circle (and pos/radius) in the GML namespace: tolerated.
    let sip = Sip::load("sip/ng911-invite-all-additional-data-by-value.sip");
    let l = sip.locations().unwrap();
    assert_eq!(l.len(), 2);
    civic(&l[0]);
    assert_circle(&l[1], 34.247493, -118.791885, 50.0);
    assert_eq!(
        l[1].source.content_id.as_deref(),
        Some("8185553333@10.1.11.3")
    );
    assert_eq!(
        split_multipart(&sip.header("Content-Type"), &sip.body)
            .unwrap()
            .len(),
        9
    );
    // The upstream copy with bare LF line ends gives the same locations.
    let upstream = Sip::load("upstream/siplib/InviteAllAdditionalDataByValue1.sip");
    assert_eq!(upstream.locations().unwrap(), l);

    // eCall: the binary MSD part stays byte-exact beside the PIDF.
    let sip = Sip::load("ecall/ecall-invite-automatic-with-msd.sip");
    let l = sip.locations().unwrap();
    assert_eq!(l.len(), 1);
    assert_point(&l[0], 50.10710, 8.66270, None);
    let parts = split_multipart(&sip.header("Content-Type"), &sip.body).unwrap();
    let msd = parts
        .iter()
        .find(|p| p.media_type() == "application/emergencycalldata.ecall.msd")
        .unwrap();
    assert_eq!(
        &msd.body[..],
        &read("ecall/msd-uper-vin-WM9VDSVDSYA123456.bin")[..]
    );
    assert_eq!(msd.body.len(), 47);
}

#[test]
fn geolocation_picks_the_part_named_by_cid() {
    let sip = Sip::load("sip/sos-invite-two-pidf-parts.sip");
    let all = sip.locations().unwrap();
    assert_eq!(all.len(), 2);
    assert_point(&all[0], -34.407, 150.883, None);
    assert_eq!(all[0].source.content_id.as_deref(), Some("p2d@example.com"));
    let g = sip.geolocation();
    assert_eq!(g.len(), 1);
    let Ok(Geolocation::ByValue {
        content_id,
        locations,
    }) = &g[0]
    else {
        panic!("{g:?}");
    };
    assert_eq!(content_id, "p3d@example.com");
    assert_eq!(locations.len(), 1);
    assert_point(&locations[0], -34.407, 150.883, Some(24.8));

    let sip = Sip::load("sip/sos-invite-two-geolocation-values.sip");
    let g = sip.geolocation();
    assert_eq!(g.len(), 2);
    let Ok(Geolocation::ByValue { locations, .. }) = &g[0] else {
        panic!("{g:?}");
    };
    assert_eq!(locations.len(), 1);
    civic(&locations[0]);
    assert_eq!(
        g[1].as_ref().unwrap(),
        &Geolocation::ByReference("https://lis.example.com/loc/ab12cd34".to_owned())
    );

    let sip = Sip::load("sip/rfc6442-invite-location-by-reference.sip");
    assert!(sip.locations().unwrap().is_empty());
    let g = sip.geolocation();
    assert_eq!(g.len(), 1);
    assert_eq!(
        g[0].as_ref().unwrap(),
        &Geolocation::ByReference("https://lis.atlanta.example.com/loc/3sdefrhy2jj7".to_owned())
    );
}

#[test]
fn negative_cases_give_clear_errors() {
    let sip = Sip::load("sip/sos-invite-pidf-truncated-xml.sip");
    match sip.locations() {
        Err(LocationError::InPart { content_id, source }) => {
            assert_eq!(content_id.as_deref(), Some("handset1@example.com"));
            assert!(
                matches!(
                    *source,
                    LocationError::Xml { .. } | LocationError::UnexpectedEof
                ),
                "{source}"
            );
        }
        other => panic!("expected a PIDF error, got {other:?}"),
    }
    // The multipart framing itself is fine: the SDP part is still available.
    let parts = split_multipart(&sip.header("Content-Type"), &sip.body).unwrap();
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0].media_type(), "application/sdp");

    let sip = Sip::load("sip/sos-invite-geolocation-dangling-cid.sip");
    assert!(sip.locations().unwrap().is_empty());
    let g = sip.geolocation();
    assert_eq!(g.len(), 1);
    match &g[0] {
        Err(LocationError::DanglingCid { cid }) => assert_eq!(cid, "missing-part@example.com"),
        other => panic!("expected DanglingCid, got {other:?}"),
    }

    let sip = Sip::load("sip/sos-invite-no-location.sip");
    assert!(sip.locations().unwrap().is_empty());
    assert!(sip.geolocation().is_empty());
}

fn all_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            all_files(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// Nothing in the corpus — nor any truncation of it — makes the parsers panic.
#[test]
fn no_file_panics_even_truncated() {
    let mut files = Vec::new();
    all_files(Path::new(CORPUS), &mut files);
    assert!(files.len() >= 60, "corpus has {} files", files.len());
    for path in files {
        let bytes = std::fs::read(&path).unwrap();
        let is_sip = path.extension().is_some_and(|e| e == "sip");
        // About 300 prefixes per file (every 7th octet for small files) plus the whole file.
        let step = (bytes.len() / 300).max(7);
        let cuts = (0..bytes.len()).step_by(step).chain([bytes.len()]);
        for cut in cuts {
            let prefix = &bytes[..cut];
            let _ = parse_pidf(prefix);
            let _ = from_sip_body("multipart/mixed; boundary=boundary1", prefix);
        }
        if is_sip {
            let rel = path
                .strip_prefix(CORPUS)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let sip = Sip::load(&rel);
            let _ = sip.locations();
            let _ = resolve_geolocation(
                &sip.header("Geolocation"),
                &sip.header("Content-Type"),
                &sip.body,
            );
        }
    }
}

// ---- RFC 5491 shapes, civic addresses, usage rules, confidence (the MANIFEST's values) ----

#[track_caller]
fn close(a: f64, b: f64) {
    assert!((a - b).abs() < EPS, "{a} != {b}");
}

#[track_caller]
fn assert_pos(p: &Position, lat: f64, lon: f64, alt: Option<f64>) {
    close(p.lat, lat);
    close(p.lon, lon);
    match (p.alt_m, alt) {
        (None, None) => {}
        (Some(x), Some(y)) => close(x, y),
        (x, y) => panic!("alt {x:?} != {y:?}"),
    }
}

fn one(rel: &str) -> Location {
    let mut l = pidf(rel);
    assert_eq!(l.len(), 1, "{rel}");
    l.remove(0)
}

#[test]
fn rfc5491_ellipse_and_arc_band() {
    let l = one("pidf/RFC5491TupleEllipseLocation.xml");
    let Shape::Ellipse {
        centre,
        semi_major_m,
        semi_minor_m,
        orientation_deg,
    } = &l.shape
    else {
        panic!("{:?}", l.shape)
    };
    assert_pos(centre, 42.5463, -73.2512, None);
    close(*semi_major_m, 1275.0);
    close(*semi_minor_m, 670.0);
    close(*orientation_deg, 43.2);
    assert_eq!(l.method.as_deref(), Some("Device-Assisted_A-GPS"));
    assert_eq!(l.usage_rules, UsageRules::default());

    let l = one("pidf/RFC5491TupleArcBandLocation.xml");
    let Shape::ArcBand {
        centre,
        inner_radius_m,
        outer_radius_m,
        start_angle_deg,
        opening_angle_deg,
    } = &l.shape
    else {
        panic!("{:?}", l.shape)
    };
    assert_pos(centre, -43.5723, 153.2176, None);
    close(*inner_radius_m, 3594.0);
    close(*outer_radius_m, 4148.0);
    close(*start_angle_deg, 20.0);
    close(*opening_angle_deg, 20.0);
    assert_eq!(l.method.as_deref(), Some("TA-NMR"));
}

#[test]
fn rfc5491_polygons_pos_and_pos_list_agree() {
    let expected = [
        (43.311, -73.422),
        (43.111, -73.322),
        (43.111, -73.222),
        (43.311, -73.122),
        (43.411, -73.222),
        (43.411, -73.322),
        (43.311, -73.422),
    ];
    let mut shapes = Vec::new();
    for file in [
        "pidf/RFC5491TuplePolygonLocation.xml",
        "pidf/RFC5491TuplePolygonCompactLocation.xml",
    ] {
        let l = one(file);
        let Shape::Polygon { vertices } = &l.shape else {
            panic!("{file}: {:?}", l.shape)
        };
        assert_eq!(vertices.len(), 7, "{file}");
        for (v, (lat, lon)) in vertices.iter().zip(expected) {
            assert_pos(v, lat, lon, None);
        }
        assert_eq!(vertices.first(), vertices.last());
        shapes.push(l.shape);
    }
    assert_eq!(shapes[0], shapes[1]);
}

#[test]
fn rfc5491_three_dimensional_shapes() {
    let l = one("pidf/RFC5491TupleSphereLocation.xml");
    let Shape::Sphere { centre, radius_m } = &l.shape else {
        panic!("{:?}", l.shape)
    };
    assert_pos(centre, 42.5463, -73.2512, Some(26.3));
    close(*radius_m, 850.24);

    let l = one("pidf/RFC5491TupleEllipsoidLocation.xml");
    let Shape::Ellipsoid {
        centre,
        semi_major_m,
        semi_minor_m,
        vertical_m,
        orientation_deg,
    } = &l.shape
    else {
        panic!("{:?}", l.shape)
    };
    assert_pos(centre, 42.5463, -73.2512, Some(26.3));
    close(*semi_major_m, 7.7156);
    close(*semi_minor_m, 3.31);
    close(*vertical_m, 28.7);
    close(*orientation_deg, 90.0);

    let l = one("pidf/RFC5491TuplePrismLocation.xml");
    let Shape::Prism { base, height_m } = &l.shape else {
        panic!("{:?}", l.shape)
    };
    close(*height_m, 2.4);
    let expected = [
        (42.556844, -73.248157),
        (42.656844, -73.248157),
        (42.656844, -73.348157),
        (42.556844, -73.348157),
        (42.556844, -73.248157),
    ];
    assert_eq!(base.len(), 5);
    for (v, (lat, lon)) in base.iter().zip(expected) {
        assert_pos(v, lat, lon, Some(36.6));
    }
}

#[test]
fn civic_addresses_all_fields_trimmed() {
    let l = one("pidf/RFC5491TupleCivicLocation.xml");
    let c = civic(&l);
    assert_eq!(
        c.fields(),
        vec![
            ("country", "US"),
            ("A1", "New York"),
            ("A3", "New York"),
            ("A6", "Broadway"),
            ("HNO", "123"),
            ("LOC", "Suite 75"),
            ("PC", "10027-0401"),
        ]
    );
    assert_eq!(l.usage_rules.retransmission_allowed, Some(true));
    assert_eq!(
        l.usage_rules.retention_expiry.as_deref(),
        Some("2003-06-23T04:57:29Z")
    );

    let l = one("pidf/rfc5139-civic-au.xml");
    let c = civic(&l);
    assert_eq!(c.language.as_deref(), Some("en-AU"));
    assert_eq!(
        c.fields(),
        vec![
            ("country", "AU"),
            ("A1", "NSW"),
            ("A3", "Wollongong"),
            ("A4", "North Wollongong"),
            ("STS", "Street"),
            ("LMK", "Gilligan's Island"),
            ("LOC", "Corner"),
            ("NAM", "Video Rental Store"),
            ("PC", "2500"),
            ("ROOM", "Westerns and Classics"),
            ("PLC", "store"),
            ("POBOX", "Private Box 15"),
            ("RD", "Flinders"),
            ("RDBR", "Campbell Street"),
        ]
    );
    assert_eq!(l.method.as_deref(), Some("Manual"));

    let l = one("pidf/DeviceCivicLocation.xml");
    let c = civic(&l);
    assert_eq!(
        (c.country.as_deref(), c.a1.as_deref(), c.a3.as_deref()),
        (Some("US"), Some("IL"), Some("AURORA"))
    );
    assert_eq!(
        (
            c.prd.as_deref(),
            c.rd.as_deref(),
            c.hno.as_deref(),
            c.pcn.as_deref()
        ),
        (Some("E"), Some("NEW YORK"), Some("2106"), Some("AURORA"))
    );

    let l = pidf("pidf/rfc6442-device-point-person-civic.xml");
    let c = civic(&l[1]);
    assert_eq!(
        c.fields(),
        vec![
            ("country", "US"),
            ("A1", "Texas"),
            ("A3", "Colleyville"),
            ("STS", "Circle"),
            ("HNO", "3913"),
            ("FLR", "1"),
            ("NAM", "Haley's Place"),
            ("PC", "76034"),
            ("RD", "Treemont"),
        ]
    );
    // "false\n        " in basicPolicy: trimmed.
    assert_eq!(l[0].usage_rules.retransmission_allowed, Some(false));
    assert_eq!(l[1].usage_rules.retransmission_allowed, Some(false));

    for (file, a3, rd, hno, pc) in [
        (
            "pidf/DeviceAndPerson.xml",
            "Simi Valley",
            "Stonebrook",
            "311",
            "93065",
        ),
        (
            "pidf/PersonDeviceCivicCircleLocation.xml",
            "Simi Valley",
            "Kay",
            "1657",
            "93063",
        ),
    ] {
        let c = civic(&pidf(file)[0]).clone();
        assert_eq!(c.country.as_deref(), Some("US"), "{file}");
        assert_eq!(c.a1.as_deref(), Some("CA"), "{file}");
        assert_eq!(c.a3.as_deref(), Some(a3), "{file}");
        assert_eq!(c.rd.as_deref(), Some(rd), "{file}");
        assert_eq!(c.hno.as_deref(), Some(hno), "{file}");
        assert_eq!(c.pc.as_deref(), Some(pc), "{file}");
    }
}

#[track_caller]
fn extensions(c: &CivicAddress) -> Vec<(&str, &str, &str)> {
    c.extensions
        .iter()
        .map(|e| (e.namespace.as_str(), e.name.as_str(), e.value.as_str()))
        .collect()
}

#[test]
fn rfc6848_extensions_kept_as_name_value() {
    let l = one("pidf/RFC6848CivicExtendedExample1.xml");
    let c = civic(&l);
    assert_eq!(
        (
            c.country.as_deref(),
            c.a1.as_deref(),
            c.a3.as_deref(),
            c.rd.as_deref(),
            c.sts.as_deref()
        ),
        (
            Some("UK"),
            Some("Devon"),
            Some("Monkokehampton"),
            Some("Deckport"),
            Some("Cross")
        )
    );
    assert_eq!(
        extensions(c),
        vec![(
            "http://devon.canals.example.com/civic",
            "bridge",
            "21451338"
        )]
    );

    const EXT: &str = "urn:ietf:params:xml:ns:pidf:geopriv10:civicAddr:ext";
    let l = one("pidf/RFC6848Figure7Example.xml");
    let c = civic(&l);
    assert_eq!(
        (c.a2.as_deref(), c.rd.as_deref()),
        (Some("Sacramento"), Some("I5"))
    );
    assert_eq!(
        extensions(c),
        vec![(EXT, "MP", "248"), (EXT, "PN", "22-109-689")]
    );

    let l = one("pidf/RFC6848Figure8Example.xml");
    let c = civic(&l);
    assert_eq!(
        (c.rd.as_deref(), c.hno.as_deref()),
        (Some("Colorado"), Some("223"))
    );
    assert_eq!(
        extensions(c),
        vec![(EXT, "STP", "Boulevard"), (EXT, "HNP", "A")]
    );

    let l = one("pidf/RFC6848Section3.4Example.xml");
    let c = civic(&l);
    assert_eq!(c.language.as_deref(), Some("en-US"));
    assert_eq!(
        (c.country.as_deref(), c.a1.as_deref()),
        (Some("US"), Some("CA"))
    );
    let post = "http://postsoftheworld.example.com/ns";
    let ap = "http://example.com/airport/5.0";
    assert_eq!(
        extensions(c),
        vec![
            (post, "lamp", "2471"),
            (post, "pylon", "AQ-374-4(c)"),
            (ap, "airport", "LAX"),
            (ap, "terminal", "Tom Bradley"),
            (ap, "concourse", "G"),
            (ap, "gate", "36B"),
        ]
    );
}

#[test]
fn usage_rules_confidence_and_provided_by() {
    let l = one("pidf/RFC5491TuplePointLocation.xml");
    assert_eq!(l.usage_rules.retransmission_allowed, Some(false));
    assert_eq!(l.confidence, None);

    let l = one("pidf/DeviceCircleWithConfidence.xml");
    assert_eq!(
        l.confidence,
        Some(Confidence {
            percent: Some(95.0),
            pdf: Pdf::Normal
        })
    );
    assert_eq!(l.usage_rules.retransmission_allowed, Some(true));

    let l = one("pidf/circle-with-confidence-and-provided-by-ref.xml");
    assert_eq!(l.confidence.and_then(|c| c.percent), Some(95.0));
    assert_eq!(
        l.usage_rules.retention_expiry.as_deref(),
        Some("2030-01-01T00:00:00Z")
    );
    let by = l.provided_by.expect("provided-by");
    assert_eq!(
        by.references,
        vec![DataReference {
            purpose: "EmergencyCallData.ProviderInfo".into(),
            uri: "https://adr.example.com/providerinfo/1".into()
        }]
    );
    assert!(by.values.is_empty());

    let l = pidf("additional-data/PidfLoProvidedByByReference.xml");
    let by = l[0].provided_by.as_ref().expect("provided-by");
    let refs: Vec<(&str, &str)> = by
        .references
        .iter()
        .map(|r| (r.purpose.as_str(), r.uri.as_str()))
        .collect();
    assert_eq!(
        refs,
        vec![
            ("EmergencyCallData.ServiceInfo", "https://example.com/ref1"),
            ("EmergencyCallData.ProviderInfo", "https://example.com/ref2"),
            ("EmergencyCallData.Comment", "https://example.com/ref3"),
            ("EmergencyCallData.ServiceInfo", "https://example.com/ref4"),
            ("EmergencyCallData.DeviceInfo", "https://example.com/ref5"),
        ]
    );
    let c = civic(&l[0]);
    assert_eq!(
        (
            c.a3.as_deref(),
            c.rd.as_deref(),
            c.hno.as_deref(),
            c.pc.as_deref()
        ),
        (Some("Any City"), Some("Main"), Some("311"), Some("91234"))
    );
    // The retention-expiry's trailing space is trimmed.
    assert_eq!(
        l[0].usage_rules.retention_expiry.as_deref(),
        Some("2016-12-10T20:00:00Z")
    );

    let l = pidf("additional-data/PidfLoProvidedByByValue.xml");
    let by = l[0].provided_by.as_ref().expect("provided-by");
    let purposes: Vec<&str> = by.values.iter().map(AdditionalData::purpose).collect();
    assert_eq!(
        purposes,
        vec![
            "Comment",
            "DeviceInfo",
            "ProviderInfo",
            "ServiceInfo",
            "SubscriberInfo"
        ]
    );
    let c = civic(&l[0]);
    assert_eq!(c.a3.as_deref(), Some("Any City"));
}

// ---- RFC 7852 additional data ----

fn block(rel: &str) -> AdditionalData {
    parse_additional_data(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn rfc7852_blocks() {
    let AdditionalData::ProviderInfo(p) = block("additional-data/ProvInfo1.xml") else {
        panic!()
    };
    assert_eq!(
        p.data_provider_string.as_deref(),
        Some("Smith Telecom Inc.")
    );
    assert_eq!(p.provider_id.as_deref(), Some("urn:nena:companyid:ID123"));
    assert_eq!(p.provider_id_series.as_deref(), Some("NENA"));
    assert_eq!(p.type_of_provider.as_deref(), Some("Telecom Provider"));
    assert_eq!(p.contact_uri.as_deref(), Some("tel:+1-201-555-0123"));
    assert_eq!(p.languages, vec!["en"]);
    let contact = p.contact.expect("vCard");
    assert_eq!(contact.full_name.as_deref(), Some("John Smith"));
    assert_eq!(contact.organisations, vec!["Example VoIP Provider"]);
    assert_eq!(contact.telephones, vec!["tel:+1 800-123-4567"]);
    assert_eq!(
        contact.addresses,
        vec!["123 First St., New York, NY, 12345, USA"]
    );

    let AdditionalData::ServiceInfo(s) = block("additional-data/ServiceInfo1.xml") else {
        panic!()
    };
    assert_eq!(s.service_environment.as_deref(), Some("Unknown"));
    assert_eq!(s.service_types, vec!["wireless"]);
    assert_eq!(s.service_mobility.as_deref(), Some("Mobile"));
    assert_eq!(
        s.data_provider_reference.as_deref(),
        Some("2468.IBOC.MLTS.1359@example.org")
    );

    let AdditionalData::DeviceInfo(d) = block("additional-data/DeviceInfo1.xml") else {
        panic!()
    };
    assert_eq!(d.device_classification.as_deref(), Some("fixed"));
    assert_eq!(d.device_mfgr.as_deref(), Some("Nokia"));
    assert_eq!(d.device_model_nr.as_deref(), Some("Lumia 800"));
    assert_eq!(d.unique_device_ids.len(), 1);
    assert_eq!(
        d.unique_device_ids[0].type_of_device_id.as_deref(),
        Some("IMEI")
    );
    // "35788104 " in the file: XML text is trimmed.
    assert_eq!(d.unique_device_ids[0].value, "35788104");

    let AdditionalData::SubscriberInfo(s) = block("additional-data/SubInfo1.xml") else {
        panic!()
    };
    assert_eq!(s.privacy_requested, Some(false));
    let card = s.subscriber.expect("vCard");
    assert_eq!(card.full_name.as_deref(), Some("John Smith"));
    assert_eq!(card.addresses, vec!["500 West St., AURORA, IL, 12345, USA"]);
    assert_eq!(
        card.telephones,
        vec!["tel:+1 630 555 0100", "tel:+1 630 555 0101"]
    );

    let AdditionalData::Comment(c) = block("additional-data/Comment1.xml") else {
        panic!()
    };
    assert_eq!(c.comments.len(), 1);
    assert_eq!(c.comments[0].language.as_deref(), Some("en"));
    assert_eq!(c.comments[0].text, "This is an example of a comment.");

    // A PIDF document is not an additional data block.
    assert!(matches!(
        parse_additional_data(&read("pidf/rfc5491-point-2d.xml")),
        Err(LocationError::NotAdditionalData { .. })
    ));
}

#[test]
fn ecall_control_blocks() {
    let AdditionalData::Control(c) = block("ecall/Rfc8147-9.1.1.3.xml") else {
        panic!()
    };
    assert_eq!(c.acks.len(), 1);
    assert_eq!(c.acks[0].received, Some(true));
    assert_eq!(
        c.acks[0].reference.as_deref(),
        Some("1234567890@atlanta.example.com")
    );

    let AdditionalData::Control(c) = block("ecall/Rfc8147-9.1.2.2.xml") else {
        panic!()
    };
    assert_eq!(c.capabilities.len(), 1);
    assert_eq!(c.capabilities[0].action, "send-data");
    assert_eq!(
        c.capabilities[0].attributes,
        vec![("supported-values".to_owned(), "eCall.MSD".to_owned())]
    );

    let AdditionalData::Control(c) = block("ecall/Rfc8147-9.1.3.3.xml") else {
        panic!()
    };
    assert_eq!(c.requests.len(), 1);
    assert_eq!(
        c.requests[0].attributes,
        vec![("datatype".to_owned(), "eCall.MSD".to_owned())]
    );

    let AdditionalData::Control(c) = block("ecall/Rfc8148-9.2.xml") else {
        panic!()
    };
    let actions: Vec<&str> = c.requests.iter().map(|r| r.action.as_str()).collect();
    assert_eq!(
        actions,
        vec!["send-data", "lamp", "msg-static", "msg-dynamic"]
    );
    assert_eq!(
        c.requests[1].attributes,
        vec![
            ("element-id".to_owned(), "hazard".to_owned()),
            ("requested-state".to_owned(), "flash".to_owned()),
            ("persistence".to_owned(), "PT1H".to_owned()),
        ]
    );
    assert_eq!(
        c.requests[3].text.as_deref(),
        Some("Remain calm. Help is on the way.")
    );
}

#[test]
fn call_info_by_value_and_by_reference() {
    let sip = Sip::load("sip/ng911-invite-all-additional-data-by-value.sip");
    let entries = resolve_additional_data(
        &sip.header("Call-Info"),
        &sip.header("Content-Type"),
        &sip.body,
    )
    .unwrap();
    let entries: Vec<AdditionalDataEntry> = entries.into_iter().map(Result::unwrap).collect();
    let purposes: Vec<&str> = entries.iter().map(|e| e.purpose.as_str()).collect();
    // nena-IncidentId / nena-CallId are not EmergencyCallData.* and are skipped.
    assert_eq!(
        purposes,
        vec![
            "ProviderInfo",
            "ServiceInfo",
            "DeviceInfo",
            "Subscriber",
            "Comment",
            "NENA-CallerInfo",
            "NENA-LocationInfo"
        ]
    );
    let kinds: Vec<Option<&str>> = entries
        .iter()
        .map(|e| match &e.content {
            EntryContent::Value(v) => Some(v.purpose()),
            _ => None,
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            Some("ProviderInfo"),
            Some("ServiceInfo"),
            Some("DeviceInfo"),
            Some("SubscriberInfo"),
            Some("Comment"),
            None,
            None
        ]
    );
    assert!(matches!(
        &entries[5].content,
        EntryContent::Unparsed { content_type, octets }
            if content_type == "application/emergencycalldata.nena-callerinfo+xml" && *octets > 0
    ));
    assert_eq!(entries[0].uri, "cid:ProviderInfo@AddDataClient.com");

    let sip = Sip::load("sip/sos-invite-circle-by-value.sip");
    let entries: Vec<AdditionalDataEntry> = resolve_additional_data(
        &sip.header("Call-Info"),
        &sip.header("Content-Type"),
        &sip.body,
    )
    .unwrap()
    .into_iter()
    .map(Result::unwrap)
    .collect();
    let refs: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| {
            assert_eq!(e.content, EntryContent::Reference);
            (e.purpose.as_str(), e.uri.as_str())
        })
        .collect();
    assert_eq!(
        refs,
        vec![
            ("ProviderInfo", "https://adr.example.com/providerinfo/1"),
            ("ServiceInfo", "https://adr.example.com/serviceinfo/1"),
            ("DeviceInfo", "https://adr.example.com/deviceinfo/1"),
        ]
    );

    // eCall: the MSD by value, kept as an undecoded 47-octet part.
    let sip = Sip::load("ecall/ecall-invite-automatic-with-msd.sip");
    let entries = resolve_additional_data(
        &sip.header("Call-Info"),
        &sip.header("Content-Type"),
        &sip.body,
    )
    .unwrap();
    assert_eq!(entries.len(), 1);
    let e = entries[0].as_ref().unwrap();
    assert_eq!(e.purpose, "eCall.MSD");
    assert_eq!(
        e.content,
        EntryContent::Unparsed {
            content_type: "application/emergencycalldata.ecall.msd".into(),
            octets: 47
        }
    );
}

// ---- AML (ETSI TS 103 625) ----

fn aml(rel: &str) -> Result<AmlReport, LocationError> {
    parse_aml_sms(&String::from_utf8(read(rel)).unwrap())
}

#[test]
fn aml_sms_messages() {
    let r = aml("aml/aml-sms-v1-wifi-example.txt").unwrap();
    assert_eq!(r.version, "1");
    close(r.lat, 54.76397);
    close(r.lon, -0.18305);
    assert_eq!(r.radius_m, Some(50.0));
    assert_eq!(r.confidence_percent, Some(90.0));
    assert_eq!(r.positioning_method.as_deref(), Some("W"));
    assert_eq!(
        (r.mcc.as_deref(), r.mnc.as_deref()),
        (Some("234"), Some("30"))
    );
    let l = r.to_location();
    assert_circle(&l, 54.76397, -0.18305, 50.0);
    assert_eq!(l.timestamp.as_deref(), Some("2013-07-17T14:19:35Z"));
    assert_eq!(l.method.as_deref(), Some("Wi-Fi"));
    assert_eq!(l.source.origin, Origin::AmlSms);

    let r = aml("aml/aml-sms-v1-gps.txt").unwrap();
    assert_circle(&r.to_location(), 48.20849, 16.37208, 12.0);
    assert_eq!(r.confidence_percent, Some(68.0));
    assert_eq!(r.imsi.as_deref(), Some("001010123456789"));
    assert_eq!(r.imei.as_deref(), Some("490154203237518"));
    assert_eq!(r.to_location().method.as_deref(), Some("GNSS"));
    assert_eq!(
        r.to_location().timestamp.as_deref(),
        Some("2024-05-01T10:15:30Z")
    );

    let r = aml("aml/aml-sms-v1-cell-large-radius.txt").unwrap();
    assert_circle(&r.to_location(), -33.86882, 151.20929, 1964.0);
    assert_eq!(r.to_location().method.as_deref(), Some("Cell"));

    assert!(matches!(
        aml("aml/aml-sms-v1-bad-ml.txt"),
        Err(LocationError::AmlLengthMismatch {
            declared: 200,
            actual: 128
        })
    ));
    assert!(matches!(
        aml("aml/aml-sms-v1-truncated.txt"),
        Err(LocationError::AmlMissingField { field: "ml" })
    ));
}

#[test]
fn aml_https_form() {
    let body = String::from_utf8(read("aml/aml-https-v3-form-body.txt")).unwrap();
    let r = parse_aml_https(&body).unwrap();
    assert_eq!(r.version, "3");
    assert_eq!(r.caller_number.as_deref(), Some("+447700900123"));
    assert_eq!(r.radius_m, Some(10.4));
    assert_eq!(r.confidence_percent, Some(83.0));
    assert_eq!(r.floor.as_deref(), Some("5"));
    assert_eq!(r.positioning_method.as_deref(), Some("GPS"));
    let l = r.to_location();
    assert_circle(&l, 55.85732, -4.26325, 10.4);
    assert_eq!(l.timestamp.as_deref(), Some("2016-10-11T12:37:24.435Z"));
    assert_eq!(l.source.origin, Origin::AmlHttps);
    assert_eq!(l.confidence.and_then(|c| c.percent), Some(83.0));
}

// ---- every MANIFEST entry ----

/// Every file of MANIFEST.tsv goes through the parser for its kind; the negative ones (and
/// only they) fail, with the expected error. Counts are checked so that a file added to the
/// corpus without a parser here is noticed.
#[test]
fn every_manifest_file_parses_or_fails_as_expected() {
    let manifest = String::from_utf8(read("MANIFEST.tsv")).unwrap();
    let (mut passed, mut failed_as_expected, mut total) = (0, 0, 0);
    for line in manifest.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        let mut cols = line.split('\t');
        let (file, kind) = (cols.next().unwrap(), cols.next().unwrap());
        total += 1;
        let negative = [
            "aml/aml-sms-v1-bad-ml.txt",
            "aml/aml-sms-v1-truncated.txt",
            "sip/sos-invite-pidf-truncated-xml.sip",
            "sip/sos-invite-geolocation-dangling-cid.sip",
        ]
        .contains(&file);
        let outcome: Result<usize, String> = match kind {
            "pidf" => parse_pidf(&read(file))
                .map(|l| l.len())
                .map_err(|e| e.to_string()),
            "additional-data" if file.contains("PidfLo") => parse_pidf(&read(file))
                .map(|l| l.len())
                .map_err(|e| e.to_string()),
            "additional-data" | "ecall-control" => parse_additional_data(&read(file))
                .map(|_| 1)
                .map_err(|e| e.to_string()),
            "sip" => {
                let sip = Sip::load(file);
                let geo = sip.geolocation();
                let body = sip.locations();
                match (body, geo.iter().find_map(|g| g.as_ref().err())) {
                    (Err(e), _) => Err(e.to_string()),
                    (Ok(_), Some(e)) => Err(e.to_string()),
                    (Ok(l), None) => Ok(l.len() + geo.len()),
                }
            }
            "ecall-msd" => {
                let msd = read(file);
                if msd.len() == 47 {
                    Ok(1)
                } else {
                    Err("size".into())
                }
            }
            "aml-sms" => aml(file).map(|_| 1).map_err(|e| e.to_string()),
            "aml-https" => parse_aml_https(&String::from_utf8(read(file)).unwrap())
                .map(|_| 1)
                .map_err(|e| e.to_string()),
            other => panic!("{file}: unknown kind {other}"),
        };
        match (negative, outcome) {
            (false, Ok(_)) => passed += 1,
            (true, Err(e)) => {
                assert!(!e.is_empty());
                failed_as_expected += 1;
            }
            (false, Err(e)) => panic!("{file}: {e}"),
            (true, Ok(n)) => panic!("{file}: negative case parsed ({n})"),
        }
    }
    assert_eq!(total, 56, "MANIFEST entries");
    assert_eq!((passed, failed_as_expected), (52, 4));
}
