//! hark-audiocheck: checks a decoded test tone (S16LE on stdin) with the analysis
//! every test tier shares (see the library's documentation for the rules).
//!
//!   hark-audiocheck --rate R --channels C [--channel N] --seconds S --freq F
//!                   --level DBFS [--level-tolerance DB] [--max-disturbed N]
//!   hark-audiocheck --rate R --channels C [--channel N] --report
//!
//! Prints one line (duration, level, frequency, disturbed windows); with
//! `--report`, a JSON object and no verdict. Exit status: 0 the tone is as
//! expected, 1 it is not (the reasons on stderr), 2 a usage error.

use std::io::Read;
use std::process::ExitCode;

use hark_audiocheck::{Expect, Pcm, analyse};

struct Args {
    rate: u32,
    channels: u16,
    channel: u16,
    report: bool,
    expect: Expect,
}

fn parse(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut a = Args {
        rate: 0,
        channels: 0,
        channel: 0,
        report: false,
        expect: Expect::tone(f64::NAN, f64::NAN, f64::NAN),
    };
    fn num<T: std::str::FromStr>(flag: &str, v: Option<String>) -> Result<T, String> {
        let v = v.ok_or(format!("{flag} needs a value"))?;
        v.parse()
            .map_err(|_| format!("{flag}: not a number: {v:?}"))
    }
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--rate" => a.rate = num(&flag, it.next())?,
            "--channels" => a.channels = num(&flag, it.next())?,
            "--channel" => a.channel = num(&flag, it.next())?,
            "--seconds" => a.expect.seconds = num(&flag, it.next())?,
            "--freq" => a.expect.freq_hz = num(&flag, it.next())?,
            "--level" => a.expect.level_dbfs = num(&flag, it.next())?,
            "--level-tolerance" => a.expect.level_tolerance_db = num(&flag, it.next())?,
            "--max-disturbed" => a.expect.max_disturbed = num(&flag, it.next())?,
            "--report" => a.report = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if a.rate == 0 || a.channels == 0 {
        return Err("--rate and --channels are required".into());
    }
    if a.channel >= a.channels {
        return Err(format!(
            "--channel {} of a {}-channel stream",
            a.channel, a.channels
        ));
    }
    let e = &a.expect;
    if !a.report && (e.seconds.is_nan() || e.freq_hz.is_nan() || e.level_dbfs.is_nan()) {
        return Err("--seconds, --freq and --level are required (or --report)".into());
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("hark-audiocheck: {e}");
            return ExitCode::from(2);
        }
    };
    let mut bytes = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut bytes) {
        eprintln!("hark-audiocheck: reading stdin: {e}");
        return ExitCode::from(2);
    }
    let pcm = Pcm::from_s16le(&bytes, args.rate, args.channels);
    let a = analyse(&pcm.channel(args.channel), args.rate);
    if args.report {
        println!(
            "{{\"seconds\": {:.3}, \"level_dbfs\": {:.2}, \"freq_hz\": {:.2}, \"windows\": {}}}",
            a.seconds,
            if a.level_dbfs.is_finite() {
                a.level_dbfs
            } else {
                -200.0
            },
            a.freq_hz,
            a.windows.len()
        );
        return ExitCode::SUCCESS;
    }
    println!("{}", a.summary(&args.expect));
    match a.check(&args.expect) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hark-audiocheck: {e}");
            ExitCode::FAILURE
        }
    }
}
