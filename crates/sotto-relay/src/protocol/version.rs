//! The words of an `UnsupportedVersion` refusal.
//!
//! A relay that speaks none of the versions a `Hello` offers answers
//! `Error UnsupportedVersion` with a message naming both lists
//! (docs/relay.md §3):
//!
//! ```text
//! unsupported protocol version: client offers [1], this relay speaks [2]
//! ```
//!
//! The relay writes it with [`unsupported_version_message`]; the client
//! reads the relay's list back with [`relay_versions`], so a program can
//! tell which versions it would need.

/// The message of an `UnsupportedVersion` refusal of `offered`, by a relay
/// that speaks `supported`.
#[cfg(feature = "server")]
pub(crate) fn unsupported_version_message(offered: &[u16], supported: &[u16]) -> String {
    format!(
        "unsupported protocol version: client offers {offered:?}, this relay speaks {supported:?}"
    )
}

/// The relay's versions named by an `UnsupportedVersion` message (the
/// list after `speaks`), or `None` if it names none in that form.
pub(crate) fn relay_versions(message: &str) -> Option<Vec<u16>> {
    let (_, after) = message.rsplit_once("speaks [")?;
    let (list, _) = after.split_once(']')?;
    list.split(',').map(|v| v.trim().parse().ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "server")]
    #[test]
    fn the_relays_versions_survive_its_message() {
        for supported in [&[2u16][..], &[2, 3], &[65535]] {
            let message = unsupported_version_message(&[1], supported);
            assert_eq!(relay_versions(&message).as_deref(), Some(supported));
        }
        assert_eq!(
            unsupported_version_message(&[1], &[2]),
            "unsupported protocol version: client offers [1], this relay speaks [2]"
        );
    }

    #[test]
    fn a_message_in_another_form_names_no_versions() {
        for message in [
            "",
            "no",
            "speaks []",
            "speaks [2",
            "speaks [two]",
            "speaks [70000]",
        ] {
            assert_eq!(relay_versions(message), None, "{message:?}");
        }
        assert_eq!(
            relay_versions("this relay speaks [3, 4] only"),
            Some(vec![3, 4])
        );
    }
}
