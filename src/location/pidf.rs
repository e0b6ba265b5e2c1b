//! PIDF-LO (RFC 4119, RFC 5491): geodetic shapes in GML 3.1.1 and the RFC 5491 shapes
//! namespace, read with quick-xml into a small element tree. Namespaces are matched by URI,
//! never by prefix.

use quick_xml::XmlVersion;
use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;

use super::{Location, LocationError, PresenceElement, Shape, Source};

const NS_PIDF: &str = "urn:ietf:params:xml:ns:pidf";
const NS_DATA_MODEL: &str = "urn:ietf:params:xml:ns:pidf:data-model";
const NS_GEOPRIV: &str = "urn:ietf:params:xml:ns:pidf:geopriv10";
const NS_CIVIC: &str = "urn:ietf:params:xml:ns:pidf:geopriv10:civicAddr";
const NS_GML: &str = "http://www.opengis.net/gml";
/// The GML namespace of the RFC 4119 examples.
const NS_GML_LEGACY: &str = "urn:opengis:specification:gml:schema-xsd:feature:v3.0";
const NS_PIDFLO: &str = "http://www.opengis.net/pidflo/1.0";
/// Unit of measure "metre" (RFC 5491 §5.1).
const UOM_METRE: &str = "urn:ogc:def:uom:EPSG::9001";

/// Deepest element nesting accepted; PIDF-LO documents are shallow.
const MAX_DEPTH: usize = 64;
/// Most elements accepted in one document.
const MAX_ELEMENTS: usize = 20_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ns {
    Pidf,
    DataModel,
    Geopriv,
    Civic,
    Gml,
    PidfLo,
    Other,
}

impl Ns {
    fn from_uri(uri: &str) -> Self {
        match uri {
            NS_PIDF => Ns::Pidf,
            NS_DATA_MODEL => Ns::DataModel,
            NS_GEOPRIV => Ns::Geopriv,
            NS_CIVIC => Ns::Civic,
            NS_GML | NS_GML_LEGACY => Ns::Gml,
            NS_PIDFLO => Ns::PidfLo,
            _ => Ns::Other,
        }
    }
}

#[derive(Debug)]
struct Element {
    ns: Ns,
    local: String,
    /// Attributes by local name (prefixes dropped: `gml:id` is `id`).
    attributes: Vec<(String, String)>,
    children: Vec<Element>,
    text: String,
}

impl Element {
    fn is(&self, ns: &[Ns], local: &str) -> bool {
        self.local == local && ns.contains(&self.ns)
    }

    fn child(&self, ns: &[Ns], local: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.is(ns, local))
    }

    fn attribute(&self, local: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(name, _)| name == local)
            .map(|(_, v)| v.as_str())
    }

    fn trimmed_text(&self) -> Option<String> {
        let t = self.text.trim();
        (!t.is_empty()).then(|| t.to_owned())
    }
}

/// Parse a PIDF-LO document into its locations, in document order.
///
/// Every `<tuple>` (RFC 3863), `<dm:device>` and `<dm:person>` (RFC 4479) of the `<presence>`
/// root is searched for `<gp:geopriv>` (RFC 4119 §2.2) elements; each shape in a
/// `<gp:location-info>` gives one [`Location`] carrying the geopriv's `<method>` and the
/// element's `<timestamp>`. Supported shapes: `gml:Point` (2D, EPSG::4326, and 3D,
/// EPSG::4979; `gml:pos` or the RFC 4119 `gml:coordinates` form, decimal or D:M:S with a
/// hemisphere letter) and `gs:Circle` (radius in metres, `urn:ogc:def:uom:EPSG::9001`).
/// A `Circle` in the GML namespace is tolerated. Other GML/RFC 5491 shapes and civic
/// addresses give [`Shape::Other`] with the element's local name. A document with no shape
/// (e.g. only RFC 5962 dynamic data) gives an empty list.
///
/// The `content_id` of every returned [`Source`] is `None`.
///
/// # Errors
/// [`LocationError::NotUtf8`], [`LocationError::Xml`] and [`LocationError::UnexpectedEof`]
/// for a document that is not well-formed (e.g. truncated), [`LocationError::TooComplex`],
/// [`LocationError::NotPidf`] if the root is not a PIDF `<presence>`, and the shape errors
/// ([`LocationError::InvalidPosition`], [`LocationError::OutOfRange`],
/// [`LocationError::InvalidRadius`], [`LocationError::UnsupportedUom`],
/// [`LocationError::UnsupportedCrs`], [`LocationError::MissingElement`]).
pub fn parse_pidf(xml: &[u8]) -> Result<Vec<Location>, LocationError> {
    let root = parse_tree(xml)?;
    if !root.is(&[Ns::Pidf], "presence") {
        return Err(LocationError::NotPidf { root: root.local });
    }
    let mut locations = Vec::new();
    for child in &root.children {
        let element = if child.is(&[Ns::Pidf], "tuple") {
            PresenceElement::Tuple
        } else if child.is(&[Ns::DataModel], "device") {
            PresenceElement::Device
        } else if child.is(&[Ns::DataModel], "person") {
            PresenceElement::Person
        } else {
            continue;
        };
        let source = Source {
            element,
            id: child.attribute("id").map(str::to_owned),
            content_id: None,
        };
        let timestamp = child
            .child(&[Ns::Pidf, Ns::DataModel], "timestamp")
            .and_then(Element::trimmed_text);
        let mut geoprivs = Vec::new();
        find_all(child, Ns::Geopriv, "geopriv", &mut geoprivs);
        for geopriv in geoprivs {
            // <method> belongs in the geopriv namespace; some devices put it in pidf's.
            let method = geopriv
                .child(&[Ns::Geopriv, Ns::Pidf], "method")
                .and_then(Element::trimmed_text);
            for info in geopriv
                .children
                .iter()
                .filter(|c| c.is(&[Ns::Geopriv], "location-info"))
            {
                let mut shapes = Vec::new();
                for candidate in &info.children {
                    collect_shapes(candidate, &mut shapes)?;
                }
                locations.extend(shapes.into_iter().map(|shape| Location {
                    shape,
                    method: method.clone(),
                    timestamp: timestamp.clone(),
                    source: source.clone(),
                }));
            }
        }
    }
    Ok(locations)
}

fn find_all<'a>(element: &'a Element, ns: Ns, local: &str, out: &mut Vec<&'a Element>) {
    for child in &element.children {
        if child.is(&[ns], local) {
            out.push(child);
        } else {
            find_all(child, ns, local, out);
        }
    }
}

fn collect_shapes(element: &Element, out: &mut Vec<Shape>) -> Result<(), LocationError> {
    match (element.ns, element.local.as_str()) {
        // RFC 4119 §2.2.2 wraps the feature in <gml:location>.
        (Ns::Gml, "location") => {
            for child in &element.children {
                collect_shapes(child, out)?;
            }
        }
        (Ns::Gml, "Point") => out.push(point(element)?),
        (Ns::PidfLo | Ns::Gml, "Circle") => out.push(circle(element)?),
        (Ns::Gml | Ns::PidfLo, other) => out.push(Shape::Other(other.to_owned())),
        (Ns::Civic, "civicAddress") => out.push(Shape::Other("civicAddress".to_owned())),
        // Confidence (RFC 7459), dynamic data (RFC 5962), extensions: not shapes.
        _ => {}
    }
    Ok(())
}

fn point(element: &Element) -> Result<Shape, LocationError> {
    check_crs(element)?;
    let (lat, lon, alt_m) = position(element, "Point")?;
    Ok(Shape::Point { lat, lon, alt_m })
}

fn circle(element: &Element) -> Result<Shape, LocationError> {
    check_crs(element)?;
    let (lat, lon, _) = position(element, "Circle")?;
    let radius =
        element
            .child(&[Ns::PidfLo, Ns::Gml], "radius")
            .ok_or(LocationError::MissingElement {
                shape: "Circle",
                child: "radius",
            })?;
    let uom = radius.attribute("uom").unwrap_or_default();
    if uom != UOM_METRE {
        return Err(LocationError::UnsupportedUom {
            uom: uom.to_owned(),
        });
    }
    let text = radius.text.trim();
    let radius_m = text
        .parse::<f64>()
        .ok()
        .filter(|r| r.is_finite() && *r >= 0.0)
        .ok_or_else(|| LocationError::InvalidRadius {
            text: text.to_owned(),
        })?;
    Ok(Shape::Circle { lat, lon, radius_m })
}

/// Accept WGS 84 only: EPSG::4326 (2D) and EPSG::4979 (3D), RFC 5491 §3. A shape without
/// `srsName` is taken as WGS 84.
fn check_crs(element: &Element) -> Result<(), LocationError> {
    match element.attribute("srsName") {
        None => Ok(()),
        Some(srs) if srs.ends_with("4326") || srs.ends_with("4979") => Ok(()),
        Some(srs) => Err(LocationError::UnsupportedCrs {
            srs: srs.to_owned(),
        }),
    }
}

/// Latitude, longitude (decimal degrees) and altitude (metres) of a shape's centre.
fn position(
    element: &Element,
    shape: &'static str,
) -> Result<(f64, f64, Option<f64>), LocationError> {
    let (numbers, text) = if let Some(pos) = element.child(&[Ns::Gml, Ns::PidfLo], "pos") {
        let text = pos.text.trim();
        let numbers: Option<Vec<f64>> = text
            .split_ascii_whitespace()
            .map(|n| n.parse::<f64>().ok())
            .collect();
        (numbers, text)
    } else if let Some(coordinates) = element.child(&[Ns::Gml], "coordinates") {
        let text = coordinates.text.trim();
        (legacy_coordinates(text), text)
    } else {
        return Err(LocationError::MissingElement {
            shape,
            child: "pos",
        });
    };
    let invalid = || LocationError::InvalidPosition {
        text: text.to_owned(),
    };
    let numbers = numbers.ok_or_else(invalid)?;
    let (lat, lon, alt) = match numbers.as_slice() {
        [lat, lon] => (*lat, *lon, None),
        [lat, lon, alt] => (*lat, *lon, Some(*alt)),
        _ => return Err(invalid()),
    };
    if !(lat.is_finite() && lon.is_finite() && alt.is_none_or(f64::is_finite)) {
        return Err(invalid());
    }
    if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
        return Err(LocationError::OutOfRange { lat, lon });
    }
    Ok((lat, lon, alt))
}

/// `gml:coordinates` of RFC 4119: either decimal `lat,lon[,alt]` / `lat lon`, or
/// degrees:minutes:seconds with a hemisphere letter (`37:46:30N 122:25:10W`).
fn legacy_coordinates(text: &str) -> Option<Vec<f64>> {
    text.split(|c: char| c == ',' || c.is_ascii_whitespace())
        .filter(|t| !t.is_empty())
        .map(dms)
        .collect()
}

fn dms(token: &str) -> Option<f64> {
    let (body, sign) = match token.chars().last()? {
        'N' | 'n' | 'E' | 'e' => (token.get(..token.len() - 1)?, 1.0),
        'S' | 's' | 'W' | 'w' => (token.get(..token.len() - 1)?, -1.0),
        _ => (token, 1.0),
    };
    let mut value = 0.0;
    let mut scale = 1.0;
    for (i, field) in body.split(':').enumerate() {
        if i > 2 {
            return None;
        }
        let n = field.parse::<f64>().ok()?;
        if i > 0 && !(0.0..60.0).contains(&n) {
            return None;
        }
        value += n / scale;
        scale *= 60.0;
    }
    Some(sign * value)
}

/// Build the element tree of a well-formed document.
fn parse_tree(xml: &[u8]) -> Result<Element, LocationError> {
    let xml = xml.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(xml);
    let text = std::str::from_utf8(xml).map_err(|_| LocationError::NotUtf8)?;
    let mut reader = NsReader::from_str(text);
    let mut stack: Vec<Element> = Vec::new();
    let mut count = 0usize;
    loop {
        let position = reader.buffer_position();
        let (resolved, event) = reader
            .read_resolved_event()
            .map_err(|source| LocationError::Xml { position, source })?;
        match event {
            Event::Start(start) => {
                count += 1;
                if stack.len() >= MAX_DEPTH || count > MAX_ELEMENTS {
                    return Err(LocationError::TooComplex);
                }
                stack.push(element(&resolved, &start));
            }
            Event::Empty(start) => {
                count += 1;
                if count > MAX_ELEMENTS {
                    return Err(LocationError::TooComplex);
                }
                let done = element(&resolved, &start);
                match stack.last_mut() {
                    Some(parent) => parent.children.push(done),
                    None => return Ok(done),
                }
            }
            Event::End(_) => {
                let done = stack.pop().ok_or(LocationError::UnexpectedEof)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(done),
                    None => return Ok(done),
                }
            }
            Event::Text(t) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&t.xml10_content());
                }
            }
            Event::CData(t) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&t.xml10_content());
                }
            }
            Event::GeneralRef(r) => {
                if let Some(top) = stack.last_mut() {
                    let resolved = match r.resolve_char_ref() {
                        Ok(Some(c)) => Some(c),
                        Ok(None) => match r.xml10_content().as_ref() {
                            "lt" => Some('<'),
                            "gt" => Some('>'),
                            "amp" => Some('&'),
                            "apos" => Some('\''),
                            "quot" => Some('"'),
                            _ => None,
                        },
                        Err(source) => return Err(LocationError::Xml { position, source }),
                    };
                    if let Some(c) = resolved {
                        top.text.push(c);
                    }
                }
            }
            Event::Eof => return Err(LocationError::UnexpectedEof),
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
}

fn element(resolved: &ResolveResult<'_>, start: &quick_xml::events::BytesStart<'_>) -> Element {
    let ns = match resolved {
        ResolveResult::Bound(ns) => Ns::from_uri(ns.as_ref()),
        _ => Ns::Other,
    };
    let attributes = start
        .attributes()
        .filter_map(Result::ok)
        .map(|a| {
            let local = a.key.local_name().as_ref().to_owned();
            let value = a
                .normalized_value(XmlVersion::Implicit1_0)
                .map(|v| v.into_owned())
                .unwrap_or_else(|_| a.value.clone().into_owned());
            (local, value)
        })
        .collect();
    Element {
        ns,
        local: start.local_name().as_ref().to_owned(),
        attributes,
        children: Vec::new(),
        text: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dms_conversion() {
        assert!((dms("37:46:30N").unwrap() - 37.775).abs() < 1e-9);
        assert!((dms("122:25:10W").unwrap() + 122.419_444_444).abs() < 1e-6);
        assert_eq!(dms("12.5"), Some(12.5));
        assert_eq!(dms("1:99:0N"), None);
        assert_eq!(dms("N"), None);
    }

    #[test]
    fn namespaces_by_uri_not_prefix() {
        let xml = br#"<p:presence xmlns:p="urn:ietf:params:xml:ns:pidf"
            xmlns:x="urn:ietf:params:xml:ns:pidf:geopriv10" xmlns:g="http://www.opengis.net/gml">
            <p:tuple id="t"><p:status><x:geopriv><x:location-info>
            <g:Point><g:pos>1.5 2.5</g:pos></g:Point></x:location-info>
            <x:method>GPS</x:method></x:geopriv></p:status></p:tuple></p:presence>"#;
        let locations = parse_pidf(xml).unwrap();
        assert_eq!(locations.len(), 1);
        assert_eq!(
            locations[0].shape,
            Shape::Point {
                lat: 1.5,
                lon: 2.5,
                alt_m: None
            }
        );
        assert_eq!(locations[0].method.as_deref(), Some("GPS"));
        assert_eq!(locations[0].source.id.as_deref(), Some("t"));

        // The right local names in the wrong namespace are not a location.
        let wrong = br#"<presence xmlns="urn:ietf:params:xml:ns:pidf"><tuple><status>
            <geopriv><location-info><Point><pos>1 2</pos></Point></location-info></geopriv>
            </status></tuple></presence>"#;
        assert!(parse_pidf(wrong).unwrap().is_empty());
    }

    #[test]
    fn shape_errors() {
        let doc = |shape: &str| {
            format!(
                r#"<presence xmlns="urn:ietf:params:xml:ns:pidf"
                xmlns:gp="urn:ietf:params:xml:ns:pidf:geopriv10"
                xmlns:gml="http://www.opengis.net/gml" xmlns:gs="http://www.opengis.net/pidflo/1.0">
                <tuple id="x"><status><gp:geopriv><gp:location-info>{shape}</gp:location-info>
                </gp:geopriv></status></tuple></presence>"#
            )
        };
        let parse = |shape: &str| parse_pidf(doc(shape).as_bytes());
        assert!(matches!(
            parse("<gml:Point><gml:pos>91 0</gml:pos></gml:Point>"),
            Err(LocationError::OutOfRange { .. })
        ));
        assert!(matches!(
            parse("<gml:Point><gml:pos>1 two</gml:pos></gml:Point>"),
            Err(LocationError::InvalidPosition { .. })
        ));
        assert!(matches!(
            parse("<gml:Point><gml:pos>1 2 3 4</gml:pos></gml:Point>"),
            Err(LocationError::InvalidPosition { .. })
        ));
        assert!(matches!(
            parse("<gml:Point/>"),
            Err(LocationError::MissingElement { .. })
        ));
        assert!(matches!(
            parse(
                r#"<gml:Point srsName="urn:ogc:def:crs:EPSG::27700"><gml:pos>1 2</gml:pos></gml:Point>"#
            ),
            Err(LocationError::UnsupportedCrs { .. })
        ));
        assert!(matches!(
            parse(
                r#"<gs:Circle><gml:pos>1 2</gml:pos><gs:radius uom="urn:ogc:def:uom:EPSG::9002">3</gs:radius></gs:Circle>"#
            ),
            Err(LocationError::UnsupportedUom { .. })
        ));
        assert!(matches!(
            parse(
                r#"<gs:Circle><gml:pos>1 2</gml:pos><gs:radius uom="urn:ogc:def:uom:EPSG::9001">-3</gs:radius></gs:Circle>"#
            ),
            Err(LocationError::InvalidRadius { .. })
        ));
        assert_eq!(
            parse(r#"<gs:Ellipse><gml:pos>1 2</gml:pos></gs:Ellipse>"#).unwrap()[0].shape,
            Shape::Other("Ellipse".to_owned())
        );
    }

    #[test]
    fn malformed_documents() {
        assert!(matches!(
            parse_pidf(b"<presence"),
            Err(LocationError::Xml { .. })
        ));
        assert!(matches!(
            parse_pidf(b"<presence xmlns=\"urn:ietf:params:xml:ns:pidf\"><tuple>"),
            Err(LocationError::UnexpectedEof)
        ));
        assert!(matches!(
            parse_pidf(b"<a></b>"),
            Err(LocationError::Xml { .. })
        ));
        assert!(matches!(parse_pidf(b""), Err(LocationError::UnexpectedEof)));
        assert!(matches!(
            parse_pidf(b"\xff\xfe<"),
            Err(LocationError::NotUtf8)
        ));
        assert!(matches!(
            parse_pidf(b"<other/>"),
            Err(LocationError::NotPidf { .. })
        ));
        let deep = "<a>".repeat(100);
        assert!(matches!(
            parse_pidf(deep.as_bytes()),
            Err(LocationError::TooComplex)
        ));
    }
}
