//! Caller location against `../shared/corpus/location` (values from its MANIFEST.tsv).

use std::path::{Path, PathBuf};

use vigie::location::{
    Geolocation, Location, LocationError, PresenceElement, Shape, from_sip_body, parse_pidf,
    resolve_geolocation, split_multipart,
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

fn other(name: &str) -> Shape {
    Shape::Other(name.to_owned())
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
    assert_eq!(l[0].shape, other("civicAddress"));
    assert_eq!(l[0].source.element, PresenceElement::Device);
    assert_eq!(l[0].method.as_deref(), Some("802.11"));
    assert_eq!(l[0].timestamp.as_deref(), Some("2015-07-09T20:57:29Z"));
    assert_circle(&l[1], 34.247493, -118.791885, 50.0);
    assert_eq!(l[1].source.element, PresenceElement::Person);
    assert_eq!(l[1].source.id.as_deref(), Some("12345"));

    let l = pidf("pidf/PersonDeviceCivicCircleLocation.xml");
    assert_eq!(l.len(), 2);
    assert_eq!(l[0].shape, other("civicAddress"));
    assert_circle(&l[1], 34.268544, -118.666519, 50.0);

    let l = pidf("pidf/DevicePointLocation.xml");
    assert_eq!(l.len(), 1);
    assert_point(&l[0], 41.772035, -88.473291, None);

    let l = pidf("pidf/rfc6442-device-point-person-civic.xml");
    assert_eq!(l.len(), 2);
    assert_point(&l[0], 32.86726, -97.16054, None);
    assert_eq!(l[0].source.element, PresenceElement::Device);
    assert_eq!(l[1].shape, other("civicAddress"));
    assert_eq!(l[1].source.element, PresenceElement::Person);

    let l = pidf("additional-data/PidfLoProvidedByByReference.xml");
    assert_eq!(l.len(), 2);
    assert_eq!(l[0].shape, other("civicAddress"));
    assert_circle(&l[1], 34.247493, -118.791885, 50.0);

    // Dynamic data only: no position must be invented.
    assert!(pidf("pidf/DeviceDynamicOnly1.xml").is_empty());
}

#[test]
fn other_shapes_and_civic_are_named() {
    for (file, name) in [
        ("pidf/RFC5491TupleEllipseLocation.xml", "Ellipse"),
        ("pidf/RFC5491TupleArcBandLocation.xml", "ArcBand"),
        ("pidf/RFC5491TuplePolygonLocation.xml", "Polygon"),
        ("pidf/RFC5491TuplePolygonCompactLocation.xml", "Polygon"),
        ("pidf/RFC5491TupleSphereLocation.xml", "Sphere"),
        ("pidf/RFC5491TupleEllipsoidLocation.xml", "Ellipsoid"),
        ("pidf/RFC5491TuplePrismLocation.xml", "Prism"),
        ("pidf/RFC5491TupleCivicLocation.xml", "civicAddress"),
        ("pidf/DeviceCivicLocation.xml", "civicAddress"),
        ("pidf/RFC6848CivicExtendedExample1.xml", "civicAddress"),
        ("pidf/RFC6848Figure7Example.xml", "civicAddress"),
        ("pidf/RFC6848Figure8Example.xml", "civicAddress"),
        ("pidf/RFC6848Section3.4Example.xml", "civicAddress"),
        ("pidf/rfc5139-civic-au.xml", "civicAddress"),
    ] {
        let l = pidf(file);
        assert_eq!(l.len(), 1, "{file}");
        assert_eq!(l[0].shape, other(name), "{file}");
    }
}

#[test]
fn sip_invites_with_location_by_value() {
    let sip = Sip::load("sip/rfc6442-invite-location-by-value.sip");
    let l = sip.locations().unwrap();
    assert_eq!(l.len(), 2);
    assert_point(&l[0], 32.86726, -97.16054, None);
    assert_eq!(l[1].shape, other("civicAddress"));
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
    assert_eq!(l[0].shape, other("civicAddress"));
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
    assert_eq!(locations[0].shape, other("civicAddress"));
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
