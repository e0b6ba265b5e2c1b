//! Additional data about an emergency call (RFC 7852): the `Call-Info` header's
//! `purpose=EmergencyCallData.*` URIs (§4.1) resolved by value (a `cid:` body part, RFC 2392)
//! or kept by reference (an `https:` URL to dereference later), and the XML blocks
//! ProviderInfo (§4.1), ServiceInfo (§4.2), DeviceInfo (§4.3), SubscriberInfo (§4.4) and
//! Comment (§4.5) read into typed structs.

use super::multipart::media_type;
use super::pidf::{Element, parse_tree};
use super::{LocationError, split_multipart};

const NS_PROVIDER: &str = "urn:ietf:params:xml:ns:EmergencyCallData:ProviderInfo";
const NS_SERVICE: &str = "urn:ietf:params:xml:ns:EmergencyCallData:ServiceInfo";
const NS_DEVICE: &str = "urn:ietf:params:xml:ns:EmergencyCallData:DeviceInfo";
const NS_SUBSCRIBER: &str = "urn:ietf:params:xml:ns:EmergencyCallData:SubscriberInfo";
const NS_COMMENT: &str = "urn:ietf:params:xml:ns:EmergencyCallData:Comment";
const NS_CONTROL: &str = "urn:ietf:params:xml:ns:EmergencyCallData:control";

/// The `purpose` prefix of additional data (RFC 7852 §4.1, IANA "Emergency Call Data Types").
const PURPOSE_PREFIX: &str = "EmergencyCallData.";

/// One additional data block (RFC 7852 §4).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum AdditionalData {
    /// `EmergencyCallData.ProviderInfo` (§4.1).
    ProviderInfo(ProviderInfo),
    /// `EmergencyCallData.ServiceInfo` (§4.2).
    ServiceInfo(ServiceInfo),
    /// `EmergencyCallData.DeviceInfo` (§4.3).
    DeviceInfo(DeviceInfo),
    /// `EmergencyCallData.SubscriberInfo` (§4.4).
    SubscriberInfo(SubscriberInfo),
    /// `EmergencyCallData.Comment` (§4.5).
    Comment(Comment),
    /// `EmergencyCallData.Control` (RFC 8147 §9.1, RFC 8148): NG-eCall control block.
    Control(Control),
}

impl AdditionalData {
    /// The block's purpose without the `EmergencyCallData.` prefix (`ProviderInfo`…).
    pub fn purpose(&self) -> &'static str {
        match self {
            AdditionalData::ProviderInfo(_) => "ProviderInfo",
            AdditionalData::ServiceInfo(_) => "ServiceInfo",
            AdditionalData::DeviceInfo(_) => "DeviceInfo",
            AdditionalData::SubscriberInfo(_) => "SubscriberInfo",
            AdditionalData::Comment(_) => "Comment",
            AdditionalData::Control(_) => "Control",
        }
    }
}

/// Data provider information (RFC 7852 §4.1); text values trimmed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderInfo {
    /// `DataProviderReference` (§4.1.1): unique id of this block.
    pub data_provider_reference: Option<String>,
    /// `DataProviderString` (§4.1.2): the provider's name.
    pub data_provider_string: Option<String>,
    /// `ProviderID` (§4.1.3).
    pub provider_id: Option<String>,
    /// `ProviderIDSeries` (§4.1.4): `NENA`, `EENA`, `domain`.
    pub provider_id_series: Option<String>,
    /// `TypeOfProvider` (§4.1.5).
    pub type_of_provider: Option<String>,
    /// `ContactURI` (§4.1.6): a `tel:`/`sip:` URI to reach the provider.
    pub contact_uri: Option<String>,
    /// `Language` (§4.1.7), in order.
    pub languages: Vec<String>,
    /// `DataProviderContact` (§4.1.8) vCard, summarised.
    pub contact: Option<VCard>,
}

/// Service information (RFC 7852 §4.2).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceInfo {
    /// `DataProviderReference`.
    pub data_provider_reference: Option<String>,
    /// `ServiceEnvironment` (§4.2.1): `Business`, `Residence`, `Unknown`.
    pub service_environment: Option<String>,
    /// `ServiceType` (§4.2.2), in order (`wireless`, `POTS`, `VOIP`…).
    pub service_types: Vec<String>,
    /// `ServiceMobility` (§4.2.3): `Mobile`, `Fixed`, `Nomadic`, `Unknown`.
    pub service_mobility: Option<String>,
}

/// Device information (RFC 7852 §4.3).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceInfo {
    /// `DataProviderReference`.
    pub data_provider_reference: Option<String>,
    /// `DeviceClassification` (§4.3.1): `cordless`, `fixed`, `smart-phone`…
    pub device_classification: Option<String>,
    /// `DeviceMfgr` (§4.3.2).
    pub device_mfgr: Option<String>,
    /// `DeviceModelNr` (§4.3.3).
    pub device_model_nr: Option<String>,
    /// `UniqueDeviceID` (§4.3.4), in order.
    pub unique_device_ids: Vec<DeviceId>,
    /// `DeviceSpecificData` (§4.3.5): a URI.
    pub device_specific_data: Option<String>,
    /// `DeviceSpecificType` (§4.3.6).
    pub device_specific_type: Option<String>,
}

/// A `UniqueDeviceID` (RFC 7852 §4.3.4).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceId {
    /// `TypeOfDeviceID` attribute: `MEID`, `ESN`, `MAC`, `WiMAX`, `IMEI`, `IMSI`, `UDI`,
    /// `RFID`, `SN`.
    pub type_of_device_id: Option<String>,
    /// The identifier, trimmed.
    pub value: String,
}

/// Subscriber information (RFC 7852 §4.4). Personal data: log it only redacted.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriberInfo {
    /// `privacyRequested` attribute (§4.4): the subscriber asked for privacy.
    pub privacy_requested: Option<bool>,
    /// `DataProviderReference`.
    pub data_provider_reference: Option<String>,
    /// `SubscriberData` vCard (§4.4.1), summarised.
    pub subscriber: Option<VCard>,
}

/// Comment (RFC 7852 §4.5).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Comment {
    /// `DataProviderReference`.
    pub data_provider_reference: Option<String>,
    /// `Comment` elements (§4.5.1), in order.
    pub comments: Vec<CommentText>,
}

/// An NG-eCall control block (RFC 8147 §9.1): acknowledgements, capabilities and requests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Control {
    /// `<ack received=… ref=…>` elements (§9.1.1).
    pub acks: Vec<ControlAck>,
    /// `<capabilities>` `<request>` elements (§9.1.2): what the sender supports.
    pub capabilities: Vec<ControlRequest>,
    /// Top-level `<request>` elements (§9.1.3).
    pub requests: Vec<ControlRequest>,
}

/// An `<ack>` of a control block (RFC 8147 §9.1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlAck {
    /// `received`: whether the referenced data was received.
    pub received: Option<bool>,
    /// `ref`: the Content-ID of the acknowledged data.
    pub reference: Option<String>,
}

/// A `<request>` of a control block (RFC 8147 §9.1.3, RFC 8148 §9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlRequest {
    /// `action` (`send-data`, `lamp`, `msg-static`, `msg-dynamic`…).
    pub action: String,
    /// The other attributes (`datatype`, `supported-values`, `element-id`…), in order.
    pub attributes: Vec<(String, String)>,
    /// The `<text>` child (`msg-dynamic`), trimmed.
    pub text: Option<String>,
}

/// One `Comment` element with its language.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommentText {
    /// `xml:lang`.
    pub language: Option<String>,
    /// The text, trimmed.
    pub text: String,
}

/// The parts of an xCard (RFC 6351) that a call-taker needs.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VCard {
    /// `fn`: formatted name.
    pub full_name: Option<String>,
    /// `org` texts.
    pub organisations: Vec<String>,
    /// `tel` URIs (or texts).
    pub telephones: Vec<String>,
    /// `email` texts.
    pub emails: Vec<String>,
    /// `adr`: street, locality, region, code, country joined with `, `.
    pub addresses: Vec<String>,
}

/// An additional data reference (RFC 7852 §4.1 `Call-Info`, §5 `EmergencyCallDataReference`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataReference {
    /// The full purpose (`EmergencyCallData.ProviderInfo`).
    pub purpose: String,
    /// The URI (`https:`, `cid:`…).
    pub uri: String,
}

/// One `Call-Info` additional data entry, resolved against the SIP body.
#[derive(Debug, Clone, PartialEq)]
pub struct AdditionalDataEntry {
    /// The purpose without the `EmergencyCallData.` prefix (`ProviderInfo`, `eCall.MSD`…).
    pub purpose: String,
    /// The URI as written in the header.
    pub uri: String,
    /// What it resolved to.
    pub content: EntryContent,
}

/// What an [`AdditionalDataEntry`] resolved to.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum EntryContent {
    /// By value: the body part's block, parsed.
    Value(Box<AdditionalData>),
    /// By value, a block this layer does not decode (eCall MSD, NENA blocks): its media
    /// type and size in octets.
    Unparsed {
        /// The part's media type.
        content_type: String,
        /// The part's size, octets.
        octets: usize,
    },
    /// By reference (`https:`…): to dereference later; passed on unchanged.
    Reference,
}

/// The `<uri>;params` entries of a `Call-Info` value (RFC 3261 §20.9) whose `purpose`
/// starts with `EmergencyCallData.` (case-insensitive), in header order.
///
/// Several `Call-Info` header fields are joined with `, ` before the call. Other purposes
/// (`emergency-CallId`, `nena-IncidentId`, `icon`…) are skipped.
pub fn parse_call_info(value: &str) -> Vec<DataReference> {
    header_entries(value)
        .into_iter()
        .filter_map(|(uri, params)| {
            let purpose = params
                .into_iter()
                .find(|(name, _)| name.eq_ignore_ascii_case("purpose"))
                .map(|(_, v)| v)?;
            purpose
                .get(..PURPOSE_PREFIX.len())
                .filter(|p| p.eq_ignore_ascii_case(PURPOSE_PREFIX))?;
            Some(DataReference { purpose, uri })
        })
        .collect()
}

/// Resolve every additional data URI of a `Call-Info` value against the message body
/// (RFC 7852 §4.1): `cid:` URIs to the multipart part with that Content-ID, parsed when it
/// is one of the five XML blocks; other URIs kept as references.
///
/// # Errors
/// The outer error is a multipart body that cannot be split. Per entry:
/// [`LocationError::DanglingCid`] when no part has the Content-ID, or the parse error of
/// the block.
pub fn resolve_additional_data(
    call_info: &str,
    content_type: &str,
    body: &[u8],
) -> Result<Vec<Result<AdditionalDataEntry, LocationError>>, LocationError> {
    let references = parse_call_info(call_info);
    let needs_body = references.iter().any(|r| is_cid(&r.uri).is_some());
    let parts = if needs_body && media_type(content_type).0.starts_with("multipart/") {
        split_multipart(content_type, body)?
    } else {
        Vec::new()
    };
    Ok(references
        .into_iter()
        .map(|r| {
            let purpose = r
                .purpose
                .get(PURPOSE_PREFIX.len()..)
                .unwrap_or_default()
                .to_owned();
            let content = match is_cid(&r.uri) {
                None => EntryContent::Reference,
                Some(cid) => {
                    let cid = super::percent_decode(cid);
                    let part = parts
                        .iter()
                        .find(|p| p.content_id.as_deref() == Some(cid.as_str()))
                        .ok_or_else(|| LocationError::DanglingCid { cid: cid.clone() })?;
                    let essence = part.media_type();
                    if essence.starts_with("application/emergencycalldata.")
                        && essence.ends_with("+xml")
                        && is_known_block(&essence)
                    {
                        EntryContent::Value(Box::new(parse_additional_data(&part.body).map_err(
                            |e| LocationError::InPart {
                                content_id: Some(cid.clone()),
                                source: Box::new(e),
                            },
                        )?))
                    } else {
                        EntryContent::Unparsed {
                            content_type: essence,
                            octets: part.body.len(),
                        }
                    }
                }
            };
            Ok(AdditionalDataEntry {
                purpose,
                uri: r.uri,
                content,
            })
        })
        .collect())
}

fn is_known_block(essence: &str) -> bool {
    [
        "providerinfo",
        "serviceinfo",
        "deviceinfo",
        "subscriberinfo",
        "comment",
        "control",
    ]
    .iter()
    .any(|b| essence.contains(b))
}

fn is_cid(uri: &str) -> Option<&str> {
    uri.get(..4)
        .filter(|scheme| scheme.eq_ignore_ascii_case("cid:"))
        .and_then(|_| uri.get(4..))
}

/// Parse one RFC 7852 XML block (its root `EmergencyCallData.ProviderInfo`, `.ServiceInfo`,
/// `.DeviceInfo`, `.SubscriberInfo` or `.Comment`, in its own namespace).
///
/// # Errors
/// The well-formedness errors of the PIDF parser ([`LocationError::Xml`],
/// [`LocationError::UnexpectedEof`], [`LocationError::NotUtf8`],
/// [`LocationError::TooComplex`]) and [`LocationError::NotAdditionalData`] for another root.
pub fn parse_additional_data(xml: &[u8]) -> Result<AdditionalData, LocationError> {
    block(&parse_tree(xml)?)
}

/// A block from its element (also used for `<EmergencyCallDataValue>` in `provided-by`).
pub(super) fn block(root: &Element) -> Result<AdditionalData, LocationError> {
    let ns = root.uri.as_str();
    let text = |name: &str| root.child_in(ns, name).and_then(Element::trimmed_text);
    let all = |name: &str| -> Vec<String> {
        root.children
            .iter()
            .filter(|c| c.local == name && c.uri == ns)
            .filter_map(Element::trimmed_text)
            .collect()
    };
    let reference = text("DataProviderReference");
    Ok(match (ns, root.local.as_str()) {
        (NS_PROVIDER, "EmergencyCallData.ProviderInfo") => {
            AdditionalData::ProviderInfo(ProviderInfo {
                data_provider_reference: reference,
                data_provider_string: text("DataProviderString"),
                provider_id: text("ProviderID"),
                provider_id_series: text("ProviderIDSeries"),
                type_of_provider: text("TypeOfProvider"),
                contact_uri: text("ContactURI"),
                languages: all("Language"),
                contact: root
                    .child_in(ns, "DataProviderContact")
                    .and_then(|c| c.descendant("vcard"))
                    .map(vcard),
            })
        }
        (NS_SERVICE, "EmergencyCallData.ServiceInfo") => AdditionalData::ServiceInfo(ServiceInfo {
            data_provider_reference: reference,
            service_environment: text("ServiceEnvironment"),
            service_types: all("ServiceType"),
            service_mobility: text("ServiceMobility"),
        }),
        (NS_DEVICE, "EmergencyCallData.DeviceInfo") => AdditionalData::DeviceInfo(DeviceInfo {
            data_provider_reference: reference,
            device_classification: text("DeviceClassification"),
            device_mfgr: text("DeviceMfgr"),
            device_model_nr: text("DeviceModelNr"),
            unique_device_ids: root
                .children
                .iter()
                .filter(|c| c.local == "UniqueDeviceID" && c.uri == ns)
                .filter_map(|c| {
                    Some(DeviceId {
                        type_of_device_id: c
                            .attribute("TypeOfDeviceID")
                            .map(|t| t.trim().to_owned()),
                        value: c.trimmed_text()?,
                    })
                })
                .collect(),
            device_specific_data: text("DeviceSpecificData"),
            device_specific_type: text("DeviceSpecificType"),
        }),
        (NS_SUBSCRIBER, "EmergencyCallData.SubscriberInfo") => {
            AdditionalData::SubscriberInfo(SubscriberInfo {
                privacy_requested: root.attribute("privacyRequested").and_then(|v| {
                    match v.trim() {
                        "true" | "1" => Some(true),
                        "false" | "0" => Some(false),
                        _ => None,
                    }
                }),
                data_provider_reference: reference,
                subscriber: root
                    .child_in(ns, "SubscriberData")
                    .and_then(|c| c.descendant("vcard"))
                    .map(vcard),
            })
        }
        (NS_COMMENT, "EmergencyCallData.Comment") => AdditionalData::Comment(Comment {
            data_provider_reference: reference,
            comments: root
                .children
                .iter()
                .filter(|c| c.local == "Comment" && c.uri == ns)
                .filter_map(|c| {
                    Some(CommentText {
                        language: c.attribute("lang").map(|l| l.trim().to_owned()),
                        text: c.trimmed_text()?,
                    })
                })
                .collect(),
        }),
        (NS_CONTROL, "EmergencyCallData.Control") => {
            let request = |e: &Element| ControlRequest {
                action: e.attribute("action").unwrap_or_default().trim().to_owned(),
                attributes: e
                    .attributes
                    .iter()
                    .filter(|(k, _)| k != "action")
                    .map(|(k, v)| (k.clone(), v.trim().to_owned()))
                    .collect(),
                text: e.child_in(ns, "text").and_then(Element::trimmed_text),
            };
            let in_ns = |e: &&Element, name: &str| e.local == name && e.uri == ns;
            AdditionalData::Control(Control {
                acks: root
                    .children
                    .iter()
                    .filter(|c| in_ns(c, "ack"))
                    .map(|c| ControlAck {
                        received: c.attribute("received").map(|r| r.trim() == "true"),
                        reference: c.attribute("ref").map(|r| r.trim().to_owned()),
                    })
                    .collect(),
                capabilities: root
                    .children
                    .iter()
                    .filter(|c| in_ns(c, "capabilities"))
                    .flat_map(|c| c.children.iter().filter(|r| in_ns(r, "request")))
                    .map(request)
                    .collect(),
                requests: root
                    .children
                    .iter()
                    .filter(|c| in_ns(c, "request"))
                    .map(request)
                    .collect(),
            })
        }
        _ => {
            return Err(LocationError::NotAdditionalData {
                root: root.local.chars().take(100).collect(),
            });
        }
    })
}

/// Summarise an xCard `<vcard>` (RFC 6351 §3).
fn vcard(card: &Element) -> VCard {
    let value = |e: &Element, names: &[&str]| -> Option<String> {
        e.children
            .iter()
            .find(|c| names.contains(&c.local.as_str()))
            .and_then(Element::trimmed_text)
    };
    let mut out = VCard::default();
    for property in &card.children {
        match property.local.as_str() {
            "fn" => out.full_name = out.full_name.take().or(value(property, &["text"])),
            "org" => out.organisations.extend(value(property, &["text"])),
            "tel" => out.telephones.extend(value(property, &["uri", "text"])),
            "email" => out.emails.extend(value(property, &["text"])),
            "adr" => {
                let lines: Vec<String> = ["street", "locality", "region", "code", "country"]
                    .iter()
                    .filter_map(|n| value(property, &[n]))
                    .collect();
                if !lines.is_empty() {
                    out.addresses.push(lines.join(", "));
                }
            }
            _ => {}
        }
    }
    out
}

/// The `<uri>;name=value` entries of a header value, comma-separated outside `<>` and
/// quotes; parameter values unquoted.
fn header_entries(value: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut entries = Vec::new();
    let mut rest = value;
    while let Some(open) = rest.find('<') {
        let after = rest.get(open + 1..).unwrap_or_default();
        let Some(close) = after.find('>') else { break };
        let uri = after.get(..close).unwrap_or_default().trim().to_owned();
        rest = after.get(close + 1..).unwrap_or_default();
        // The parameters run to the next comma outside quotes.
        let mut quoted = false;
        let mut end = rest.len();
        for (i, c) in rest.char_indices() {
            match c {
                '"' => quoted = !quoted,
                ',' if !quoted => {
                    end = i;
                    break;
                }
                _ => {}
            }
        }
        let params = rest
            .get(..end)
            .unwrap_or_default()
            .split(';')
            .filter_map(|p| {
                let (name, value) = p.split_once('=').unwrap_or((p, ""));
                let name = name.trim();
                (!name.is_empty())
                    .then(|| (name.to_owned(), value.trim().trim_matches('"').to_owned()))
            })
            .collect();
        entries.push((uri, params));
        rest = rest.get(end..).unwrap_or_default();
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_info_keeps_only_emergency_call_data() {
        let refs = parse_call_info(
            "<https://a.example/p>;purpose=EmergencyCallData.ProviderInfo, \
             <urn:emergency:uid:callid:1:x>;purpose=emergency-CallId,\
             <cid:c@x> ; Purpose=\"emergencycalldata.Comment\";x=\"a,b\"",
        );
        assert_eq!(
            refs,
            vec![
                DataReference {
                    purpose: "EmergencyCallData.ProviderInfo".into(),
                    uri: "https://a.example/p".into()
                },
                DataReference {
                    purpose: "emergencycalldata.Comment".into(),
                    uri: "cid:c@x".into()
                },
            ]
        );
        assert!(parse_call_info("garbage, <unterminated").is_empty());
    }

    #[test]
    fn blocks_by_namespace_and_root() {
        let xml = br#"<c:EmergencyCallData.Comment xmlns:c="urn:ietf:params:xml:ns:EmergencyCallData:Comment">
            <c:Comment xml:lang="fr"> Bonjour </c:Comment><c:Comment>second</c:Comment>
            </c:EmergencyCallData.Comment>"#;
        let AdditionalData::Comment(c) = parse_additional_data(xml).unwrap() else {
            panic!("not a comment");
        };
        assert_eq!(c.comments.len(), 2);
        assert_eq!(c.comments[0].language.as_deref(), Some("fr"));
        assert_eq!(c.comments[0].text, "Bonjour");
        // The right root in the wrong namespace is refused.
        assert!(matches!(
            parse_additional_data(b"<EmergencyCallData.Comment/>"),
            Err(LocationError::NotAdditionalData { .. })
        ));
        assert!(matches!(
            parse_additional_data(b"<x"),
            Err(LocationError::Xml { .. } | LocationError::UnexpectedEof)
        ));
    }

    #[test]
    fn by_value_dangling_and_reference() {
        let body = b"--b\r\nContent-Type: application/EmergencyCallData.ServiceInfo+xml\r\n\
Content-ID: <s@x>\r\n\r\n<EmergencyCallData.ServiceInfo xmlns=\"urn:ietf:params:xml:ns:EmergencyCallData:ServiceInfo\">\
<ServiceType>POTS</ServiceType><ServiceType>VOIP</ServiceType></EmergencyCallData.ServiceInfo>\r\n--b--\r\n";
        let r = resolve_additional_data(
            "<cid:s@x>;purpose=EmergencyCallData.ServiceInfo, <cid:nope@x>;purpose=EmergencyCallData.Comment, <https://r.example/1>;purpose=EmergencyCallData.DeviceInfo",
            "multipart/mixed;boundary=b",
            body,
        )
        .unwrap();
        assert_eq!(r.len(), 3);
        let Ok(AdditionalDataEntry {
            purpose,
            content: EntryContent::Value(data),
            ..
        }) = &r[0]
        else {
            panic!("{:?}", r[0]);
        };
        let AdditionalData::ServiceInfo(s) = &**data else {
            panic!("{data:?}");
        };
        assert_eq!(purpose, "ServiceInfo");
        assert_eq!(s.service_types, vec!["POTS", "VOIP"]);
        assert!(matches!(&r[1], Err(LocationError::DanglingCid { cid }) if cid == "nope@x"));
        let Ok(e) = &r[2] else { panic!() };
        assert_eq!(e.content, EntryContent::Reference);
        assert_eq!(e.uri, "https://r.example/1");
    }
}
