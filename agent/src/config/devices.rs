//! `[devices]` (discovery) and its `[[device]]` rules; the settings of devices no
//! rule names are `[defaults]`, checked by `encoding`.

use std::collections::BTreeSet;

use super::locate::{Seg, Validator, alsa_buffer, at};
use super::schema::{RawDeviceRule, RawDevices, RawSettings};
use super::{
    ConfigError, DeviceRule, DeviceSettings, DevicesConfig, encoding, parse_vendor_product,
    validate_stream_name,
};

/// `stream_names`: the `[[stream]]` names, which no rule may take.
pub(super) fn validate(
    v: &Validator<'_>,
    d: &RawDevices,
    rules: &[RawDeviceRule],
    defaults_raw: &RawSettings,
    defaults: DeviceSettings,
    stream_names: BTreeSet<String>,
) -> Result<DevicesConfig, ConfigError> {
    let key = |k| at(&[Seg::Key("devices")], k);
    // A template without {card} or {card_id} points every device at one PCM: only
    // useful with a userspace PCM (the tests), so allowed, but never empty.
    v.ensure(
        !d.alsa_device.trim().is_empty(),
        &key("alsa_device"),
        "must not be empty",
    )?;
    v.ensure(
        !d.alsa_device.chars().any(char::is_control),
        &key("alsa_device"),
        "has control characters",
    )?;
    let alsa_buffer = alsa_buffer(v, &key("alsa_buffer_ms"), d.alsa_buffer_ms)?;
    let mut names = stream_names;
    let rules = rules
        .iter()
        .enumerate()
        .map(|(i, r)| rule(v, i, r, defaults_raw, &mut names))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(DevicesConfig {
        enabled: d.enabled,
        state_dir: d.state_dir.clone(),
        alsa_device: d.alsa_device.clone(),
        pin_card_id: d.pin_card_id,
        allow_non_usb: d.allow_non_usb,
        alsa_buffer,
        defaults,
        rules,
    })
}

fn rule(
    v: &Validator<'_>,
    i: usize,
    r: &RawDeviceRule,
    defaults: &RawSettings,
    names: &mut BTreeSet<String>,
) -> Result<DeviceRule, ConfigError> {
    let table = [Seg::Key("device"), Seg::Index(i)];
    let key = |k| at(&table, k);
    validate_stream_name(&r.name).map_err(|m| v.error(&key("name"), m))?;
    v.ensure(
        names.insert(r.name.clone()),
        &key("name"),
        format!(
            "duplicate name {:?}; stream and device names must be unique",
            r.name
        ),
    )?;
    let vendor_product = match &r.vendor_product {
        None => None,
        Some(vp) => Some(parse_vendor_product(vp).ok_or_else(|| {
            v.error(
                &key("vendor_product"),
                "must look like \"0d8c:0014\" (hex vendor:product)",
            )
        })?),
    };
    v.ensure(
        r.serial.is_some() || vendor_product.is_some() || r.port.is_some(),
        &key("name"),
        "a [[device]] rule needs at least one of serial, vendor_product, port",
    )?;
    Ok(DeviceRule {
        name: r.name.clone(),
        serial: r.serial.clone(),
        vendor_product,
        port: r.port.clone(),
        settings: encoding::layered(v, &table, &r.settings(), defaults)?,
    })
}
