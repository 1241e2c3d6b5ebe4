//! `podcheck bench`: how fast a target creates and deletes pods and runs probes.

use super::args::BenchArgs;
use super::session::set_up_target;
use super::terminal::outln;
use super::{CONFORMANT, USAGE_OR_TARGET_ERROR};
use podcheck::bench::{create_to_running, probe_overhead};
use podcheck::errors::describe;
use std::time::{Duration, Instant};

pub async fn bench(args: BenchArgs) -> anyhow::Result<u8> {
    let target = match set_up_target(&args.target, "local", 0).await {
        Ok(target) => target,
        Err(code) => return Ok(code),
    };
    let (pods, concurrency) = (args.pods, args.concurrency);
    let started = Instant::now();
    let measured = create_to_running(target.as_ref(), pods, concurrency).await;
    let probes = probe_overhead(target.as_ref(), Duration::from_secs(5)).await;
    let _ = target.cleanup().await;
    let (create, delete) = match measured {
        Ok(m) => m,
        Err(err) => {
            eprintln!("error: {}", describe(&err));
            return Ok(USAGE_OR_TARGET_ERROR);
        }
    };
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    outln!(
        "target {}: {pods} pods, {concurrency} at a time, {:.1}s in all",
        target.name(),
        started.elapsed().as_secs_f64()
    )?;
    for (label, l) in [("create to Running", &create), ("delete", &delete)] {
        outln!(
            "  {label:<18} mean {:7.2} ms  p50 {:7.2} ms  p90 {:7.2} ms  p99 {:7.2} ms  max {:7.2} ms",
            ms(l.mean()),
            ms(l.percentile(50.0)),
            ms(l.percentile(90.0)),
            ms(l.percentile(99.0)),
            ms(l.percentile(100.0))
        )?;
    }
    match probes {
        Ok(probes) => {
            for (handler, l) in &probes {
                outln!(
                    "  probe {handler:<12} mean {:7.2} ms  p50 {:7.2} ms  p90 {:7.2} ms  p99 {:7.2} ms  max {:7.2} ms  ({} probes)",
                    ms(l.mean()),
                    ms(l.percentile(50.0)),
                    ms(l.percentile(90.0)),
                    ms(l.percentile(99.0)),
                    ms(l.percentile(100.0)),
                    l.samples.len()
                )?;
            }
        }
        Err(err) => eprintln!("warning: the probe measurement failed: {}", describe(&err)),
    }
    Ok(CONFORMANT)
}
