//! `cairn-bench`: runs Cairn, etcd and Redis through the same workloads on
//! this machine and writes the report (JSON, Markdown, SVG).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::Parser;

use cairn_bench::run::{self, Plan};
use cairn_bench::system::SystemKind;
use cairn_bench::workload::Workload;
use cairn_bench::{plot, report::Report};

/// Benchmarks Cairn against etcd and Redis on this machine, with the same
/// client code, concurrency and payloads.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// About a minute: 64 clients only, 2 s points, 2 failovers.
    #[arg(long)]
    quick: bool,
    /// Also write the JSON report here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Results folder (default: bench-results/<unix time>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Systems to run: cairn, etcd, redis.
    #[arg(long, value_delimiter = ',', default_value = "cairn,etcd,redis")]
    systems: Vec<String>,
    /// Workloads: put, get_linearizable, get_stale, lock, artifact_64k,
    /// artifact_1m (failover runs unless --failovers 0).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "put,get_linearizable,get_stale,lock,artifact_64k,artifact_1m"
    )]
    workloads: Vec<String>,
    /// Client counts (default 1,16,64,256; --quick: 64).
    #[arg(long, value_delimiter = ',')]
    concurrency: Option<Vec<usize>>,
    /// Seconds measured per point (default 10; --quick: 2).
    #[arg(long)]
    duration: Option<f64>,
    /// Seconds of the saturating put run at the highest concurrency, during
    /// which elections are counted (default 60; --quick: as --duration).
    #[arg(long)]
    saturate: Option<f64>,
    /// Leader failovers per replicated system (default 10; --quick: 2).
    #[arg(long)]
    failovers: Option<usize>,
    /// The cairn binary (default: built now with cargo, beside this one).
    #[arg(long, env = "CAIRN_BIN")]
    cairn_bin: Option<PathBuf>,
    /// The etcd binary (Debian: etcd-server).
    #[arg(long, default_value = "etcd")]
    etcd_bin: PathBuf,
    /// The redis-server binary (Debian: redis-server).
    #[arg(long, default_value = "redis-server")]
    redis_bin: PathBuf,
    /// Extra `cairn serve` flag for every node, repeatable.
    #[arg(long = "cairn-arg", allow_hyphen_values = true)]
    cairn_args: Vec<String>,
    /// First loopback port (Cairn uses +1.., etcd +1001.., Redis +2000).
    #[arg(long, default_value_t = 17_000)]
    base_port: u16,
    /// Keep the systems' data folders after the run.
    #[arg(long)]
    keep_data: bool,
    /// Run nothing: judge the targets of a saved report (for example runs
    /// of different systems put together) and write its table and plot.
    #[arg(long)]
    from_report: Option<PathBuf>,
}

fn parse_system(s: &str) -> anyhow::Result<SystemKind> {
    Ok(match s {
        "cairn" => SystemKind::Cairn,
        "etcd" => SystemKind::Etcd,
        "redis" => SystemKind::Redis,
        other => bail!("unknown system {other:?} (cairn, etcd, redis)"),
    })
}

fn parse_workloads(names: &[String]) -> anyhow::Result<Vec<Workload>> {
    let mut out = Vec::new();
    for name in names {
        match name.as_str() {
            "put" => out.push(Workload::Put),
            "get_linearizable" => out.push(Workload::GetLinearizable),
            "get_stale" => out.push(Workload::GetStale),
            "lock" => out.push(Workload::Lock),
            "artifact_64k" => out.extend([
                Workload::ArtifactPut(64 << 10),
                Workload::ArtifactGet(64 << 10),
            ]),
            "artifact_1m" => out.extend([
                Workload::ArtifactPut(1 << 20),
                Workload::ArtifactGet(1 << 20),
            ]),
            other => bail!("unknown workload {other:?}"),
        }
    }
    Ok(out)
}

/// Finds a program on PATH (or as given), or says which package has it.
fn locate(bin: &Path, package: &str, system: &str) -> anyhow::Result<PathBuf> {
    if bin.components().count() > 1 {
        return Ok(bin.to_path_buf());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(bin))
        .find(|p| p.is_file())
        .with_context(|| {
            format!(
                "{} not found: install Debian's {package} (apt-get install {package}), \
                 or leave {system} out with --systems",
                bin.display()
            )
        })
}

/// Builds `cairn` with the profile this binary was built with, and returns
/// the binary beside this one, so a benchmark never measures a stale build.
fn build_cairn() -> anyhow::Result<PathBuf> {
    let here = std::env::current_exe()?;
    let dir = here.parent().context("no folder for this binary")?;
    let release = dir.file_name().is_some_and(|n| n == "release");
    if !release {
        eprintln!("warning: this is not a release build; numbers from it mean little");
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "-p", "cairn", "--bin", "cairn"]);
    if release {
        cmd.arg("--release");
    }
    let status = cmd.status().context("running cargo to build cairn")?;
    if !status.success() {
        bail!("building cairn failed");
    }
    Ok(dir.join("cairn"))
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            let kib: f64 = m.lines().next()?.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib / (1024.0 * 1024.0))
        })
        .unwrap_or(0.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{model}, {cores} cores, {mem_gib:.0} GiB, Linux {}",
        kernel.trim()
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(saved) = &args.from_report {
        let mut report: Report = serde_json::from_slice(&std::fs::read(saved)?)?;
        report.judge();
        let out = args
            .out
            .clone()
            .unwrap_or_else(|| PathBuf::from("bench-results/from-report"));
        return write_outputs(&report, &out, args.json.as_deref());
    }
    let systems = args
        .systems
        .iter()
        .map(|s| parse_system(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let workloads = parse_workloads(&args.workloads)?;
    let (conc, secs, fails) = if args.quick {
        (vec![64], 2.0, 2)
    } else {
        (vec![1, 16, 64, 256], 10.0, 10)
    };
    let measure = args.duration.unwrap_or(secs);
    let etcd_bin = if systems.contains(&SystemKind::Etcd) {
        locate(&args.etcd_bin, "etcd-server", "etcd")?
    } else {
        args.etcd_bin.clone()
    };
    let redis_bin = if systems.contains(&SystemKind::Redis) {
        locate(&args.redis_bin, "redis-server", "redis")?
    } else {
        args.redis_bin.clone()
    };
    let cairn_bin = match &args.cairn_bin {
        Some(p) => p.clone(),
        None if systems.contains(&SystemKind::Cairn) => build_cairn()?,
        None => PathBuf::from("cairn"),
    };
    let plan = Plan {
        systems,
        workloads,
        concurrency: args.concurrency.clone().unwrap_or(conc),
        warmup: Duration::from_secs_f64((measure / 5.0).clamp(0.5, 2.0)),
        measure: Duration::from_secs_f64(measure),
        saturate: Duration::from_secs_f64(args.saturate.unwrap_or(if args.quick {
            measure
        } else {
            60.0
        })),
        failovers: args.failovers.unwrap_or(fails),
        cairn_bin,
        etcd_bin,
        redis_bin,
        cairn_args: args.cairn_args.clone(),
        base_port: args.base_port,
        quick: args.quick,
    };
    let stamp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("bench-results/{stamp}")));
    let data = out.join("data");
    std::fs::create_dir_all(&data)?;
    let started = httpdate::fmt_http_date(SystemTime::now());
    let result = run::run(&plan, &data, started, machine()).await;
    if !args.keep_data {
        let _ = std::fs::remove_dir_all(&data);
    }
    write_outputs(&result?, &out, args.json.as_deref())
}

/// Writes report.json, table.md and plot.svg into `out` (and the JSON to
/// `json` too), and prints the table.
fn write_outputs(report: &Report, out: &Path, json_copy: Option<&Path>) -> anyhow::Result<()> {
    std::fs::create_dir_all(out)?;
    let json = serde_json::to_string_pretty(report)?;
    std::fs::write(out.join("report.json"), &json)?;
    if let Some(path) = json_copy {
        std::fs::write(path, &json)?;
    }
    let table = report.markdown();
    std::fs::write(out.join("table.md"), &table)?;
    plot::write(&out.join("plot.svg"), &report.runs).map_err(|e| anyhow::anyhow!("plot: {e}"))?;
    println!("{table}");
    println!("report, table and plot in {}", out.display());
    Ok(())
}
