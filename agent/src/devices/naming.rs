//! Naming: identity + config rules + the name ledger -> a stream name, as a pure
//! function, so the same mic always gets the same URL.
//!
//! The order of precedence:
//! 1. a config rule that matches (by serial, vendor:product, port, or several);
//! 2. the ledger entry with the same serial (the mic may be on any port);
//! 3. for a mic without a usable serial: the ledger entry of the same model on the
//!    same port (twins are told apart by where they are plugged, not by order);
//! 4. for a mic without a usable serial on a new port: the one ledger entry of the
//!    same model whose name is not in use right now (a mic moved while its twin
//!    is absent keeps its name; with two candidates, nobody can know, so neither);
//! 5. a new name from the product string, unique among all names ever given.
//!
//! A serial shared by two attached devices at once identifies neither: both are
//! treated as having none. The [`Ledger`] is plain data; its mutators never touch
//! the disk (see `ledger.rs` for that).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::identity::Identity;
use crate::config::MAX_NAME_LEN;

/// One remembered device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub name: String,
    pub vendor_id: u16,
    pub product_id: u16,
    /// The serial it was named by, if it had a usable one.
    pub serial: Option<String>,
    /// Where it was last seen.
    pub port_path: String,
    pub product: Option<String>,
    /// Unix seconds.
    pub first_seen: u64,
    pub last_seen: u64,
}

/// Every identity ever named, in the order they were first seen.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    pub entries: Vec<LedgerEntry>,
}

/// A config rule that pins a name (and, later, settings) to matching devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameRule {
    pub name: String,
    pub serial: Option<String>,
    pub vendor_product: Option<(u16, u16)>,
    pub port_path: Option<String>,
}

impl NameRule {
    fn matches(&self, id: &Identity, serial: Option<&str>) -> bool {
        let any =
            self.serial.is_some() || self.vendor_product.is_some() || self.port_path.is_some();
        any && self.serial.as_deref().is_none_or(|s| Some(s) == serial)
            && self
                .vendor_product
                .is_none_or(|vp| vp == (id.vendor_id, id.product_id))
            && self.port_path.as_deref().is_none_or(|p| p == id.port_path)
    }
}

/// Why a device got its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    Rule,
    Serial,
    Port,
    Moved,
    New,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub name: String,
    pub reason: Reason,
    /// The serial the device is identified by (None if absent or shared).
    pub serial: Option<String>,
}

/// The serial of `id`, unless another attached device of the same model claims it.
pub fn effective_serial<'a>(id: &'a Identity, others: &[Identity]) -> Option<&'a str> {
    let s = id.serial.as_deref()?;
    let shared = others.iter().any(|o| {
        o.serial.as_deref() == Some(s)
            && (o.vendor_id, o.product_id) == (id.vendor_id, id.product_id)
            && o.port_path != id.port_path
    });
    (!shared).then_some(s)
}

/// A stream name from a product string: `[a-z0-9-]`, at most 32 characters,
/// never empty (falls back to "usb-VVVV-PPPP").
pub fn auto_name(product: Option<&str>, vendor_id: u16, product_id: u16) -> String {
    let mut out = String::new();
    for c in product.unwrap_or("").chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    let mut out: String = out.trim_matches('-').chars().take(MAX_NAME_LEN).collect();
    while out.ends_with('-') {
        out.pop();
    }
    if out.is_empty() {
        format!("usb-{vendor_id:04x}-{product_id:04x}")
    } else {
        out
    }
}

/// `base`, or `base-2`, `base-3`, ... (shortened to fit 32 characters), whichever
/// is not taken.
pub fn unique(base: &str, taken: &BTreeSet<String>) -> String {
    if !taken.contains(base) {
        return base.to_string();
    }
    (2u32..)
        .map(|n| {
            let suffix = format!("-{n}");
            let keep = MAX_NAME_LEN - suffix.len();
            let stem: String = base.chars().take(keep).collect();
            format!("{}{suffix}", stem.trim_end_matches('-'))
        })
        .find(|candidate| !taken.contains(candidate))
        .unwrap_or_else(|| base.to_string())
}

/// Names `id`. `others` are the other devices attached now; `in_use` the names they
/// (and configured streams) hold right now.
pub fn assign(
    id: &Identity,
    others: &[Identity],
    in_use: &BTreeSet<String>,
    rules: &[NameRule],
    ledger: &Ledger,
) -> Assignment {
    let serial = effective_serial(id, others).map(str::to_string);
    let done = |name: &str, reason| Assignment {
        name: name.to_string(),
        reason,
        serial: serial.clone(),
    };
    if let Some(rule) = rules.iter().find(|r| r.matches(id, serial.as_deref())) {
        return done(&rule.name, Reason::Rule);
    }
    let same_model =
        |e: &&LedgerEntry| (e.vendor_id, e.product_id) == (id.vendor_id, id.product_id);
    if let Some(s) = &serial {
        if let Some(e) = ledger
            .entries
            .iter()
            .filter(same_model)
            .find(|e| e.serial.as_ref() == Some(s))
        {
            return done(&e.name, Reason::Serial);
        }
        // Named on this port while a twin shared its serial (so by port then):
        // the same device, now alone with its serial.
        if let Some(e) = ledger.entries.iter().filter(same_model).find(|e| {
            e.serial.is_none() && e.port_path == id.port_path && !in_use.contains(&e.name)
        }) {
            return done(&e.name, Reason::Port);
        }
    } else {
        let serialless: Vec<&LedgerEntry> = ledger
            .entries
            .iter()
            .filter(same_model)
            .filter(|e| e.serial.is_none())
            .collect();
        if let Some(e) = serialless.iter().find(|e| e.port_path == id.port_path) {
            return done(&e.name, Reason::Port);
        }
        // Its serial is shared by a twin present now, so it identifies neither;
        // but the entry named by that serial on this very port is this device.
        if let Some(e) =
            ledger.entries.iter().filter(same_model).find(|e| {
                e.serial.is_some() && e.serial == id.serial && e.port_path == id.port_path
            })
        {
            return done(&e.name, Reason::Port);
        }
        let free: Vec<&&LedgerEntry> = serialless
            .iter()
            .filter(|e| !in_use.contains(&e.name))
            .filter(|e| {
                !others
                    .iter()
                    .any(|o| o.port_path == e.port_path && o.serial.is_none())
            })
            .collect();
        if let [only] = free.as_slice() {
            return done(&only.name, Reason::Moved);
        }
    }
    let mut taken: BTreeSet<String> = ledger.entries.iter().map(|e| e.name.clone()).collect();
    taken.extend(in_use.iter().cloned());
    taken.extend(rules.iter().map(|r| r.name.clone()));
    let name = unique(
        &auto_name(id.product.as_deref(), id.vendor_id, id.product_id),
        &taken,
    );
    done(&name, Reason::New)
}

impl Ledger {
    /// Remembers that `id` is called `a.name`, seen now at its port.
    pub fn record(&mut self, id: &Identity, a: &Assignment, now: u64) {
        let existing = self.entries.iter_mut().find(|e| {
            e.name == a.name && (e.vendor_id, e.product_id) == (id.vendor_id, id.product_id)
        });
        match existing {
            Some(e) => {
                e.port_path = id.port_path.clone();
                e.last_seen = now;
                if e.serial.is_none() {
                    e.serial = a.serial.clone();
                }
            }
            None => self.entries.push(LedgerEntry {
                name: a.name.clone(),
                vendor_id: id.vendor_id,
                product_id: id.product_id,
                serial: a.serial.clone(),
                port_path: id.port_path.clone(),
                product: id.product.clone(),
                first_seen: now,
                last_seen: now,
            }),
        }
    }
}

/// A `[[device]]` rule gave a device a name another device (or a configured
/// stream) already holds: the device is not streamed, and this says why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The rule's name.
    pub name: String,
    /// Who holds it: "the device on port 1-1.2" or "a configured stream".
    pub holder: String,
}

impl std::fmt::Display for Conflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the [[device]] rule \"{}\" also matches {}, which has that name; \
             give the rule a serial or a port so that it matches one device",
            self.name, self.holder
        )
    }
}

/// The one naming path, used at coldplug, at hotplug and by `harkd devices`:
/// names the `new` devices, in port order, beside the devices already named
/// (`named`: identity and name) and the names configured streams hold
/// (`reserved`). Names given are recorded in `ledger` at `now`.
///
/// Two devices present never share a name. A rule names one device: when it
/// matches a second one while the first holds the name, the second gets a
/// [`Conflict`] (reported, not streamed). Any other way to a held name (a
/// ledger entry whose name a configured stream took since) falls back to a new
/// name.
pub fn assign_all(
    new: &[Identity],
    named: &[(Identity, String)],
    reserved: &BTreeSet<String>,
    rules: &[NameRule],
    ledger: &mut Ledger,
    now: u64,
) -> Vec<Result<Assignment, Conflict>> {
    let mut order: Vec<usize> = (0..new.len()).collect();
    order.sort_by(|a, b| new[*a].port_path.cmp(&new[*b].port_path));
    let mut out: Vec<Option<Result<Assignment, Conflict>>> = vec![None; new.len()];
    // Who holds each name now: a device's port, or a configured stream.
    let mut holders: std::collections::BTreeMap<String, String> = reserved
        .iter()
        .map(|n| (n.clone(), "a configured stream".to_string()))
        .collect();
    for (id, name) in named {
        holders.insert(name.clone(), format!("the device on port {}", id.port_path));
    }
    for i in order {
        let others: Vec<Identity> = new
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, o)| o.clone())
            .chain(named.iter().map(|(o, _)| o.clone()))
            .collect();
        let in_use: BTreeSet<String> = holders.keys().cloned().collect();
        let mut a = assign(&new[i], &others, &in_use, rules, ledger);
        if let Some(holder) = holders.get(&a.name) {
            if a.reason == Reason::Rule {
                out[i] = Some(Err(Conflict {
                    name: a.name,
                    holder: holder.clone(),
                }));
                continue;
            }
            let mut taken: BTreeSet<String> =
                ledger.entries.iter().map(|e| e.name.clone()).collect();
            taken.extend(in_use);
            taken.extend(rules.iter().map(|r| r.name.clone()));
            a.name = unique(
                &auto_name(
                    new[i].product.as_deref(),
                    new[i].vendor_id,
                    new[i].product_id,
                ),
                &taken,
            );
            a.reason = Reason::New;
        }
        ledger.record(&new[i], &a, now);
        holders.insert(
            a.name.clone(),
            format!("the device on port {}", new[i].port_path),
        );
        out[i] = Some(Ok(a));
    }
    out.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mic(port: &str, serial: Option<&str>) -> Identity {
        Identity {
            vendor_id: 0x0d8c,
            product_id: 0x0014,
            serial: serial.map(str::to_string),
            manufacturer: Some("C-Media Electronics Inc.".into()),
            product: Some("USB Audio Device".into()),
            port_path: port.into(),
            id_path: None,
        }
    }

    fn names(a: &[Assignment]) -> Vec<&str> {
        a.iter().map(|x| x.name.as_str()).collect()
    }

    /// All devices new at once (a coldplug), no rules, nothing reserved.
    fn name_set(ids: &[Identity], ledger: &mut Ledger, now: u64) -> Vec<Assignment> {
        assign_all(ids, &[], &BTreeSet::new(), &[], ledger, now)
            .into_iter()
            .map(|r| r.unwrap())
            .collect()
    }

    #[test]
    fn auto_names() {
        let cases: &[(Option<&str>, &str)] = &[
            (Some("USB Audio Device"), "usb-audio-device"),
            (Some("  Blue Snowball  "), "blue-snowball"),
            (Some("AT2020USB+"), "at2020usb"),
            (Some("Mic/../../etc \"quoted\""), "mic-etc-quoted"),
            (Some("ünïcödé 🎤 mic"), "n-c-d-mic"),
            (Some("---"), "usb-0d8c-0014"),
            (Some(""), "usb-0d8c-0014"),
            (None, "usb-0d8c-0014"),
        ];
        for (product, want) in cases {
            assert_eq!(auto_name(*product, 0x0d8c, 0x0014), *want, "{product:?}");
        }
        let long = auto_name(Some(&"Very Long Product Name ".repeat(20)), 1, 2);
        assert!(long.len() <= MAX_NAME_LEN && !long.ends_with('-'), "{long}");
        for s in [long.as_str(), "usb-audio-device"] {
            crate::config::validate_stream_name(s).unwrap();
        }
    }

    #[test]
    fn unique_names_stay_short() {
        let base = "a".repeat(32);
        let taken: BTreeSet<String> = [base.clone(), format!("{}-2", "a".repeat(30))].into();
        let u = unique(&base, &taken);
        assert_eq!(u, format!("{}-3", "a".repeat(30)));
        assert!(u.len() <= MAX_NAME_LEN);
    }

    #[test]
    fn twins_without_serial_are_named_by_port_whatever_the_order() {
        let a = mic("1-1.2", None);
        let b = mic("1-1.3", None);
        let mut ledger = Ledger::default();
        let first = name_set(&[b.clone(), a.clone()], &mut ledger, 1);
        assert_eq!(
            names(&first),
            vec!["usb-audio-device-2", "usb-audio-device"]
        );
        // Reboot: announced in the other order, same names by port.
        let again = name_set(&[a.clone(), b.clone()], &mut ledger, 2);
        assert_eq!(
            names(&again),
            vec!["usb-audio-device", "usb-audio-device-2"]
        );
        assert!(again.iter().all(|x| x.reason == Reason::Port));
        // Hotplug one at a time, either order: still the same.
        for (first, second) in [(&a, &b), (&b, &a)] {
            let x = assign(first, &[], &BTreeSet::new(), &[], &ledger);
            let in_use: BTreeSet<String> = [x.name.clone()].into();
            let y = assign(second, std::slice::from_ref(first), &in_use, &[], &ledger);
            let got: BTreeSet<String> = [x.name, y.name].into();
            assert_eq!(
                got,
                ["usb-audio-device".to_string(), "usb-audio-device-2".into()].into()
            );
        }
        assert_eq!(ledger.entries.len(), 2);
    }

    #[test]
    fn a_moved_serialless_mic_keeps_its_name_when_it_is_the_only_candidate() {
        let mut ledger = Ledger::default();
        name_set(&[mic("1-1.2", None), mic("1-1.3", None)], &mut ledger, 1);
        // Twin on 1-1.3 is absent; the other moves to a new port 1-1.4.
        let moved = assign(&mic("1-1.4", None), &[], &BTreeSet::new(), &[], &ledger);
        // Two candidates (both absent): ambiguous, so a new name.
        assert_eq!(moved.reason, Reason::New);
        // With the 1-1.3 twin present, only 1-1.2's entry is free: that is us.
        let twin = mic("1-1.3", None);
        let in_use: BTreeSet<String> = ["usb-audio-device-2".to_string()].into();
        let moved = assign(&mic("1-1.4", None), &[twin], &in_use, &[], &ledger);
        assert_eq!(
            (moved.name.as_str(), moved.reason),
            ("usb-audio-device", Reason::Moved)
        );
    }

    #[test]
    fn a_serial_keeps_its_name_on_any_port() {
        let mut ledger = Ledger::default();
        let first = name_set(
            &[mic("1-1.2", Some("SN1")), mic("1-1.3", Some("SN2"))],
            &mut ledger,
            1,
        );
        assert_eq!(
            names(&first),
            vec!["usb-audio-device", "usb-audio-device-2"]
        );
        let swapped = name_set(
            &[mic("1-1.3", Some("SN1")), mic("1-1.2", Some("SN2"))],
            &mut ledger,
            2,
        );
        assert_eq!(
            names(&swapped),
            vec!["usb-audio-device", "usb-audio-device-2"]
        );
        assert!(swapped.iter().all(|x| x.reason == Reason::Serial));
    }

    #[test]
    fn a_serial_shared_by_two_attached_devices_counts_as_none() {
        let a = mic("1-1.2", Some("DUP"));
        let b = mic("1-1.3", Some("DUP"));
        assert_eq!(effective_serial(&a, std::slice::from_ref(&b)), None);
        assert_eq!(effective_serial(&a, &[]), Some("DUP"));
        let mut ledger = Ledger::default();
        let got = name_set(&[a, b], &mut ledger, 1);
        assert!(got.iter().all(|x| x.serial.is_none()));
        assert_eq!(
            ledger.entries.iter().filter(|e| e.serial.is_none()).count(),
            2
        );
    }

    #[test]
    fn rules_win_and_can_combine_fields() {
        let rules = vec![
            NameRule {
                name: "garden".into(),
                serial: Some("SN9".into()),
                vendor_product: None,
                port_path: None,
            },
            NameRule {
                name: "attic".into(),
                serial: None,
                vendor_product: Some((0x0d8c, 0x0014)),
                port_path: Some("1-1.3".into()),
            },
        ];
        let ledger = Ledger::default();
        let none = BTreeSet::new();
        let a = assign(&mic("1-1.9", Some("SN9")), &[], &none, &rules, &ledger);
        assert_eq!((a.name.as_str(), a.reason), ("garden", Reason::Rule));
        let b = assign(&mic("1-1.3", None), &[], &none, &rules, &ledger);
        assert_eq!(b.name, "attic");
        // Same model, other port: no rule; its auto name avoids the rule names.
        let c = assign(&mic("1-1.4", None), &[], &none, &rules, &ledger);
        assert_eq!(
            (c.name.as_str(), c.reason),
            ("usb-audio-device", Reason::New)
        );
        let empty_rule = NameRule {
            name: "all".into(),
            serial: None,
            vendor_product: None,
            port_path: None,
        };
        assert!(!empty_rule.matches(&mic("1-1", None), None));
    }

    fn rule(name: &str, vp: (u16, u16)) -> NameRule {
        NameRule {
            name: name.into(),
            serial: None,
            vendor_product: Some(vp),
            port_path: None,
        }
    }

    #[test]
    fn a_rule_matching_two_devices_names_one_and_reports_the_other() {
        let rules = [rule("attic", (0x0d8c, 0x0014))];
        let none = BTreeSet::new();
        let (a, b) = (mic("1-1.2", None), mic("1-1.3", None));
        // Coldplug: the lower port gets the name, the other a conflict.
        let mut ledger = Ledger::default();
        let got = assign_all(&[b.clone(), a.clone()], &[], &none, &rules, &mut ledger, 1);
        assert_eq!(
            got[0],
            Err(Conflict {
                name: "attic".into(),
                holder: "the device on port 1-1.2".into()
            })
        );
        assert_eq!(got[1].as_ref().unwrap().name, "attic");
        // Hotplug: whoever holds the name keeps it.
        let mut ledger = Ledger::default();
        let named = [(b.clone(), "attic".to_string())];
        let got = assign_all(
            std::slice::from_ref(&a),
            &named,
            &none,
            &rules,
            &mut ledger,
            1,
        );
        assert!(
            matches!(&got[0], Err(c) if c.holder == "the device on port 1-1.3"),
            "{got:?}"
        );
        assert!(
            got[0]
                .as_ref()
                .unwrap_err()
                .to_string()
                .contains("serial or a port")
        );
        // A configured stream holds the rule's name: the device is told so.
        let reserved: BTreeSet<String> = ["attic".to_string()].into();
        let got = assign_all(&[a], &[], &reserved, &rules, &mut ledger, 1);
        assert!(matches!(&got[0], Err(c) if c.holder == "a configured stream"));
    }

    #[test]
    fn no_two_present_devices_share_a_name_whatever_the_ledger_says() {
        // The ledger remembers "kitchen" for this mic; a configured stream has
        // taken that name since: the mic gets a new name, not the stream's.
        let mut ledger = Ledger::default();
        let a = mic("1-1.2", Some("SN1"));
        ledger.record(
            &a,
            &Assignment {
                name: "kitchen".into(),
                reason: Reason::New,
                serial: Some("SN1".into()),
            },
            1,
        );
        let reserved: BTreeSet<String> = ["kitchen".to_string()].into();
        let got = assign_all(&[a], &[], &reserved, &[], &mut ledger, 2);
        let got = got[0].as_ref().unwrap();
        assert_eq!(
            (got.name.as_str(), got.reason.clone()),
            ("usb-audio-device", Reason::New)
        );
    }

    /// Twins sharing a serial, named at coldplug or plugged one at a time, in
    /// any order of those, keep the same names.
    #[test]
    fn duplicate_serial_twins_get_the_same_names_at_coldplug_and_at_hotplug() {
        let (a, b) = (mic("1-1.2", Some("DUP")), mic("1-1.3", Some("DUP")));
        let none = BTreeSet::new();
        let hotplug = |ledger: &mut Ledger, t: u64| -> Vec<String> {
            let first = assign_all(std::slice::from_ref(&a), &[], &none, &[], ledger, t);
            let na = first[0].clone().unwrap().name;
            let second = assign_all(
                std::slice::from_ref(&b),
                &[(a.clone(), na.clone())],
                &none,
                &[],
                ledger,
                t,
            );
            vec![na, second[0].clone().unwrap().name]
        };
        let coldplug = |ledger: &mut Ledger, t: u64| -> Vec<String> {
            names(&name_set(&[a.clone(), b.clone()], ledger, t))
                .into_iter()
                .map(str::to_string)
                .collect()
        };
        let want = vec!["usb-audio-device".to_string(), "usb-audio-device-2".into()];
        let mut ledger = Ledger::default();
        assert_eq!(coldplug(&mut ledger, 1), want);
        assert_eq!(hotplug(&mut ledger, 2), want, "hotplug after a coldplug");
        assert_eq!(coldplug(&mut ledger, 3), want, "coldplug after a hotplug");
        let mut ledger = Ledger::default();
        assert_eq!(hotplug(&mut ledger, 1), want);
        assert_eq!(coldplug(&mut ledger, 2), want, "coldplug after a hotplug");
        assert_eq!(hotplug(&mut ledger, 3), want);
    }

    #[test]
    fn plug_order_permutations_of_three_twins_agree() {
        let ports = ["1-1.1", "1-1.2", "1-1.3"];
        let perms = [
            [0, 1, 2],
            [0, 2, 1],
            [1, 0, 2],
            [1, 2, 0],
            [2, 0, 1],
            [2, 1, 0],
        ];
        let mut results = BTreeSet::new();
        for p in perms {
            let ids: Vec<Identity> = p.iter().map(|i| mic(ports[*i], None)).collect();
            let mut ledger = Ledger::default();
            let got = name_set(&ids, &mut ledger, 1);
            let mut by_port: Vec<(String, String)> = ids
                .iter()
                .zip(&got)
                .map(|(i, a)| (i.port_path.clone(), a.name.clone()))
                .collect();
            by_port.sort();
            results.insert(by_port);
        }
        assert_eq!(results.len(), 1, "{results:?}");
    }
}
