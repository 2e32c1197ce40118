//! `[[group]]`: several microphones served as one stream, mixed or merged.
//! A group becomes a [`StreamSpec`] with a [`Source::Group`], so it is mounted,
//! started, watched and reloaded like any other stream.

use std::collections::BTreeSet;

use super::locate::{Seg, Validator, at};
use super::schema::{RawDeviceRule, RawGroup, RawMembers, RawSettings};
use super::{
    ConfigError, GroupMember, GroupMode, GroupSpec, Members, Source, StreamSpec, encoding,
    validate_stream_name,
};

/// The word for "every capture device" in `members`.
pub const ALL_DEVICES: &str = "all";

/// Most channels one member brings to a merge.
const MAX_MEMBER_CHANNELS: u32 = 8;

pub(super) fn validate(
    v: &Validator<'_>,
    raw: &[RawGroup],
    defaults: &RawSettings,
    streams: &[StreamSpec],
    rules: &[RawDeviceRule],
) -> Result<Vec<StreamSpec>, ConfigError> {
    let stream_names: BTreeSet<&str> = streams.iter().map(|s| s.name.as_str()).collect();
    let group_names: BTreeSet<&str> = raw.iter().map(|g| g.name.as_str()).collect();
    let rule_names: BTreeSet<&str> = rules.iter().map(|r| r.name.as_str()).collect();
    let mut taken = BTreeSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, g) in raw.iter().enumerate() {
        let table = [Seg::Key("group"), Seg::Index(i)];
        let key = |k| at(&table, k);
        validate_stream_name(&g.name).map_err(|m| v.error(&key("name"), m))?;
        let unique = taken.insert(g.name.as_str())
            && !stream_names.contains(g.name.as_str())
            && !rule_names.contains(g.name.as_str());
        v.ensure(
            unique,
            &key("name"),
            format!(
                "duplicate name {:?}; group, stream and device names must be unique",
                g.name
            ),
        )?;
        let members = members(v, &table, g, &group_names)?;
        let member_channels = match g.mode {
            GroupMode::Merge => {
                v.ensure(
                    g.channels.is_none(),
                    &key("channels"),
                    "a merge group has one channel per member channel; set member_channels instead",
                )?;
                let n = g.member_channels.unwrap_or(1);
                v.ensure(
                    (1..=MAX_MEMBER_CHANNELS).contains(&n),
                    &key("member_channels"),
                    format!("must be between 1 and {MAX_MEMBER_CHANNELS}"),
                )?;
                n
            }
            GroupMode::Mix => {
                v.ensure(
                    g.member_channels.is_none(),
                    &key("member_channels"),
                    "only a merge group has member_channels; a mix has channels",
                )?;
                g.channels.unwrap_or(2)
            }
        };
        let mut own = g.settings();
        let total = match (&members, g.mode) {
            (Members::Listed(m), GroupMode::Merge) => member_channels * m.len() as u32,
            _ => member_channels,
        };
        own.channels = Some(total);
        // A merge's channel count follows from its members: a codec that cannot
        // carry it is reported at `codec` (or `members` when the codec is the default).
        let settings = encoding::layered(v, &table, &own, defaults).map_err(|mut e| {
            if g.mode == GroupMode::Merge && e.key.ends_with(".channels") {
                let blame = if g.codec.is_some() {
                    key("codec")
                } else {
                    key("members")
                };
                e = v.error(
                    &blame,
                    format!(
                        "{} members x {member_channels} channels is {total} channels; {} \
                         (use codec = \"l16\" or \"aac\" for up to 8)",
                        total / member_channels,
                        e.message
                    ),
                );
            }
            e
        })?;
        out.push(StreamSpec {
            name: g.name.clone(),
            source: Source::Group(GroupSpec {
                mode: g.mode,
                members,
                member_channels,
            }),
            encoding: settings.encoding(total),
            record: settings.record,
        });
    }
    Ok(out)
}

fn members(
    v: &Validator<'_>,
    table: &[Seg],
    g: &RawGroup,
    groups: &BTreeSet<&str>,
) -> Result<Members, ConfigError> {
    let key = |k| at(table, k);
    let list = match &g.members {
        RawMembers::Word(w) if w == ALL_DEVICES => {
            v.ensure(
                g.mode == GroupMode::Mix,
                &key("members"),
                "members = \"all\" is for mix groups; a merge names its members, so that \
                 every member keeps its channels",
            )?;
            v.ensure(
                g.member_gain_db.is_empty(),
                &key("member_gain_db"),
                "member_gain_db needs members named in a list",
            )?;
            return Ok(Members::AllDevices);
        }
        RawMembers::Word(w) => {
            return Err(v.error(
                &key("members"),
                format!("{w:?} is not a list of members; write [\"a\", \"b\"] or \"all\""),
            ));
        }
        RawMembers::List(l) => l,
    };
    v.ensure(
        !list.is_empty(),
        &key("members"),
        "a group needs at least one member",
    )?;
    let mut seen = BTreeSet::new();
    for m in list {
        validate_stream_name(m).map_err(|e| v.error(&key("members"), format!("member: {e}")))?;
        v.ensure(
            m != &g.name && !groups.contains(m.as_str()),
            &key("members"),
            format!("{m:?} is a group; members are streams and devices"),
        )?;
        v.ensure(
            seen.insert(m.as_str()),
            &key("members"),
            format!("{m:?} is listed twice"),
        )?;
    }
    if !g.member_gain_db.is_empty() {
        let gains = key("member_gain_db");
        v.ensure(
            g.mode == GroupMode::Mix,
            &gains,
            "only a mix has member gains (a merge keeps each member on its own channels)",
        )?;
        for (name, db) in &g.member_gain_db {
            v.ensure(
                seen.contains(name.as_str()),
                &gains,
                format!("{name:?} is not a member of this group"),
            )?;
            v.ensure(
                db.is_finite() && (-60.0..=20.0).contains(db),
                &gains,
                format!("{name}: must be between -60 and 20 dB"),
            )?;
        }
    }
    Ok(Members::Listed(
        list.iter()
            .map(|m| GroupMember {
                name: m.clone(),
                gain_db: g.member_gain_db.get(m).copied().unwrap_or(0.0),
            })
            .collect(),
    ))
}
