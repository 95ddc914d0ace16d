//! Reading the subject fields lnswarm decides on (CN, OU, O) the way X.509 allows
//! them to be written: in any of the directory-string types. A name whose value
//! cannot be decoded makes the certificate invalid. Skipping it instead would let a
//! certificate carry a second OU in a type the reader ignores, and so pass the
//! "exactly one OU" rule with two roles.

use x509_parser::{
    asn1_rs::Tag,
    oid_registry::{
        OID_X509_COMMON_NAME, OID_X509_ORGANIZATIONAL_UNIT, OID_X509_ORGANIZATION_NAME,
    },
    x509::X509Name,
};

use super::PkiError;

/// The CN, OU and O values of a name, decoded, in the order they appear.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NameFields {
    pub common_names: Vec<String>,
    pub organizational_units: Vec<String>,
    pub organizations: Vec<String>,
}

/// Reads every CN, OU and O of `name`, whatever string type each is written in.
pub fn name_fields(name: &X509Name<'_>) -> Result<NameFields, PkiError> {
    let mut fields = NameFields::default();
    for rdn in name.iter() {
        for attr in rdn.iter() {
            let list = if *attr.attr_type() == OID_X509_COMMON_NAME {
                &mut fields.common_names
            } else if *attr.attr_type() == OID_X509_ORGANIZATIONAL_UNIT {
                &mut fields.organizational_units
            } else if *attr.attr_type() == OID_X509_ORGANIZATION_NAME {
                &mut fields.organizations
            } else {
                continue;
            };
            let value = attr.attr_value();
            list.push(directory_string(value.tag(), value.data)?);
        }
    }
    Ok(fields)
}

/// Decodes one DirectoryString value (X.520: TeletexString, PrintableString,
/// UniversalString, UTF8String or BMPString).
pub fn directory_string(tag: Tag, data: &[u8]) -> Result<String, PkiError> {
    let bad = |why: &str| PkiError::MalformedCertificate(format!("name attribute {why}"));
    match tag {
        Tag::Utf8String => String::from_utf8(data.to_vec()).map_err(|_| bad("is not UTF-8")),
        Tag::PrintableString => {
            let printable = data
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b" '()+,-./:=?".contains(b));
            if !printable {
                return Err(bad("holds characters PrintableString does not allow"));
            }
            Ok(String::from_utf8(data.to_vec()).expect("printable is ASCII"))
        }
        // T.61 is read as Latin-1, as OpenSSL and most readers do; every byte maps
        // to one character, so the value cannot hide from the reader.
        Tag::TeletexString => Ok(data.iter().map(|b| char::from(*b)).collect()),
        Tag::BmpString => {
            if !data.len().is_multiple_of(2) {
                return Err(bad("is an odd-length BMPString"));
            }
            let units = data
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]));
            char::decode_utf16(units)
                .collect::<Result<String, _>>()
                .map_err(|_| bad("is not valid UCS-2"))
        }
        Tag::UniversalString => {
            if !data.len().is_multiple_of(4) {
                return Err(bad("is a UniversalString of a length not divisible by 4"));
            }
            data.chunks_exact(4)
                .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
                .collect::<Option<String>>()
                .ok_or_else(|| bad("is not valid UCS-4"))
        }
        other => Err(bad(&format!("has type {other} (not a directory string)"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_directory_string_type_decodes() {
        assert_eq!(
            directory_string(Tag::Utf8String, b"swarm-worker").unwrap(),
            "swarm-worker"
        );
        assert_eq!(
            directory_string(Tag::PrintableString, b"swarm-worker").unwrap(),
            "swarm-worker"
        );
        assert_eq!(
            directory_string(Tag::TeletexString, b"swarm-worker").unwrap(),
            "swarm-worker"
        );
        let bmp: Vec<u8> = "swarm-worker"
            .encode_utf16()
            .flat_map(u16::to_be_bytes)
            .collect();
        assert_eq!(
            directory_string(Tag::BmpString, &bmp).unwrap(),
            "swarm-worker"
        );
        let ucs4: Vec<u8> = "swarm-worker"
            .chars()
            .flat_map(|c| (c as u32).to_be_bytes())
            .collect();
        assert_eq!(
            directory_string(Tag::UniversalString, &ucs4).unwrap(),
            "swarm-worker"
        );
    }

    #[test]
    fn undecodable_values_and_other_types_are_errors() {
        assert!(directory_string(Tag::Utf8String, &[0xff, 0xfe]).is_err());
        assert!(directory_string(Tag::PrintableString, b"a*b").is_err());
        assert!(directory_string(Tag::BmpString, &[0, 0x61, 0]).is_err());
        // A lone surrogate.
        assert!(directory_string(Tag::BmpString, &[0xd8, 0x00]).is_err());
        assert!(directory_string(Tag::UniversalString, &[0, 0x11, 0, 0]).is_err());
        assert!(directory_string(Tag::Ia5String, b"x").is_err());
        assert!(directory_string(Tag::OctetString, b"x").is_err());
    }
}
