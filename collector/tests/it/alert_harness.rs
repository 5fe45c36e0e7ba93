//! Fault-injection harness: plays scenarios (site internet cut, DNS failure, power cut, LAN
//! down, EHR vendor down, on-premises server down, one machine off, one machine cut off from
//! the EHR, flapping endpoint, overlapping faults) against the engine over a real store, and
//! compares the probable cause it gives with the cause injected. At least 95% must be right;
//! `ALERT_HARNESS_TABLE=FILE` writes the table for BENCHMARKS.md.

use std::collections::BTreeSet;

use chrono::Duration;
use rounds_collector::alerting::CauseKind;
use rounds_collector::alerting::config::AlertSettings;

use crate::alerting::{Lab, baseline_with, probe_obs};

const EHR: &str = "https://ehr.vendor.example/fhir/metadata";
const SERVER: &str = "10.0.0.5:1433";

/// A fault to inject.
#[derive(Debug, Clone)]
enum Fault {
    /// The site's internet link is cut for `secs`; machines keep running and spool baselines
    /// with the reference failing for `reason` (and resolvers down when `dns_down`).
    InternetCut {
        site: usize,
        secs: i64,
        reason: &'static str,
        dns_down: bool,
    },
    /// Power cut: every machine of the site stops; nothing is spooled.
    PowerCut { site: usize, secs: i64 },
    /// The router or switch: gateway down, spooled.
    LanDown { site: usize, secs: i64 },
    /// The EHR endpoint fails from every machine of these sites; baselines pass.
    VendorDown { sites: Vec<usize> },
    /// The on-premises server's TCP port fails from every machine of the site.
    ServerDown { site: usize },
    /// One machine stops.
    MachineOff { site: usize, machine: usize },
    /// One machine cannot reach the EHR; the others can.
    MachineCutFromEhr { site: usize, machine: usize },
    /// The on-prem server flaps from every machine of the site.
    Flapping { site: usize },
    /// An on-site collector: the internet is down but heartbeats go on; EHR probes fail.
    InternetDownCollectorReachable { site: usize },
}

struct Scenario {
    name: String,
    /// Machines per site; site i belongs to practice `P{i / sites_per_practice}`.
    machines: Vec<usize>,
    faults: Vec<Fault>,
    /// Top-level incidents expected: (source, cause).
    expect: Vec<(&'static str, CauseKind)>,
}

fn scenarios() -> Vec<Scenario> {
    let mut out = Vec::new();
    let mut add = |name: String, machines: Vec<usize>, faults: Vec<Fault>, expect: Vec<(&'static str, CauseKind)>| {
        out.push(Scenario {
            name,
            machines,
            faults,
            expect,
        })
    };
    for n in 2..=5 {
        add(
            format!("site internet cut, {n} machines"),
            vec![n, 2],
            vec![Fault::InternetCut {
                site: 0,
                secs: 180 + 20 * n as i64,
                reason: "tcp_timeout",
                dns_down: n % 2 == 0,
            }],
            vec![("site_offline", CauseKind::IspLink)],
        );
    }
    for n in [2, 3, 4] {
        add(
            format!("ISP DNS failure, {n} machines"),
            vec![n],
            vec![Fault::InternetCut {
                site: 0,
                secs: 200,
                reason: "dns_timeout",
                dns_down: true,
            }],
            vec![("site_offline", CauseKind::IspDns)],
        );
    }
    for n in [2, 3, 4, 6] {
        add(
            format!("power cut, {n} machines"),
            vec![n, 3],
            vec![Fault::PowerCut { site: 0, secs: 240 }],
            vec![("site_offline", CauseKind::SitePower)],
        );
    }
    for n in [2, 3, 5] {
        add(
            format!("router down, {n} machines"),
            vec![n],
            vec![Fault::LanDown { site: 0, secs: 200 }],
            vec![("site_offline", CauseKind::SiteNetwork)],
        );
    }
    for (k, machines) in [(2, 1), (2, 2), (3, 1), (3, 3), (4, 2), (5, 1)] {
        add(
            format!("EHR vendor down, {k} practices x {machines} machines"),
            vec![machines; k + 1],
            vec![Fault::VendorDown {
                sites: (0..k).collect(),
            }],
            vec![("ehr_vendor", CauseKind::EhrVendor)],
        );
    }
    for n in [1, 2, 3, 4, 5] {
        add(
            format!("on-premises server down, {n} machines"),
            vec![n, 2],
            vec![Fault::ServerDown { site: 0 }],
            vec![("ehr_endpoint", CauseKind::OnPremServer)],
        );
    }
    for n in [2, 3, 4, 5, 8] {
        add(
            format!("one machine off of {n}"),
            vec![n],
            vec![Fault::MachineOff {
                site: 0,
                machine: n - 1,
            }],
            vec![("agent_offline", CauseKind::OneMachine)],
        );
    }
    for n in [2, 3, 5, 6] {
        add(
            format!("one machine cut from the EHR, of {n}"),
            vec![n],
            vec![Fault::MachineCutFromEhr { site: 0, machine: 0 }],
            vec![("ehr_endpoint", CauseKind::OneMachine)],
        );
    }
    for n in [1, 2, 3, 4] {
        add(
            format!("flapping on-premises server, {n} machines"),
            vec![n],
            vec![Fault::Flapping { site: 0 }],
            vec![("ehr_endpoint", CauseKind::OnPremServer)],
        );
    }
    for n in [2, 3, 4] {
        add(
            format!("internet down, on-site collector still reached, {n} machines"),
            vec![n],
            vec![Fault::InternetDownCollectorReachable { site: 0 }],
            vec![("ehr_endpoint", CauseKind::IspLink)],
        );
    }
    // Overlapping faults.
    add(
        "vendor down at 3 practices while a 4th loses its internet".into(),
        vec![2, 2, 2, 3],
        vec![
            Fault::VendorDown { sites: vec![0, 1, 2] },
            Fault::InternetCut {
                site: 3,
                secs: 200,
                reason: "tcp_timeout",
                dns_down: true,
            },
        ],
        vec![
            ("ehr_vendor", CauseKind::EhrVendor),
            ("site_offline", CauseKind::IspLink),
        ],
    );
    add(
        "server down at one site, a machine off at another".into(),
        vec![3, 3],
        vec![Fault::ServerDown { site: 0 }, Fault::MachineOff { site: 1, machine: 1 }],
        vec![
            ("ehr_endpoint", CauseKind::OnPremServer),
            ("agent_offline", CauseKind::OneMachine),
        ],
    );
    add(
        "power cut at one site, DNS failure at another".into(),
        vec![3, 2],
        vec![
            Fault::PowerCut { site: 0, secs: 200 },
            Fault::InternetCut {
                site: 1,
                secs: 200,
                reason: "dns_timeout",
                dns_down: true,
            },
        ],
        vec![
            ("site_offline", CauseKind::SitePower),
            ("site_offline", CauseKind::IspDns),
        ],
    );
    add(
        "a machine off while the vendor is down at 2 practices".into(),
        vec![3, 2, 2],
        vec![
            Fault::VendorDown { sites: vec![1, 2] },
            Fault::MachineOff { site: 0, machine: 0 },
        ],
        vec![
            ("ehr_vendor", CauseKind::EhrVendor),
            ("agent_offline", CauseKind::OneMachine),
        ],
    );
    add(
        "flapping server at one site, machine cut from the EHR at another".into(),
        vec![2, 3],
        vec![
            Fault::Flapping { site: 0 },
            Fault::MachineCutFromEhr { site: 1, machine: 2 },
        ],
        vec![
            ("ehr_endpoint", CauseKind::OnPremServer),
            ("ehr_endpoint", CauseKind::OneMachine),
        ],
    );
    add(
        "a machine off, then its whole site loses power".into(),
        vec![4],
        vec![
            Fault::MachineOff { site: 0, machine: 0 },
            Fault::PowerCut { site: 0, secs: 240 },
        ],
        vec![("site_offline", CauseKind::SitePower)],
    );
    out
}

/// What the harness gave for one scenario.
struct Outcome {
    given: BTreeSet<(String, CauseKind)>,
    notifications: usize,
}

async fn play(s: &Scenario) -> Outcome {
    let mut lab = Lab::new(AlertSettings::default(), &["ops"]).await;
    let mut sites: Vec<Vec<String>> = Vec::new();
    for (i, n) in s.machines.iter().enumerate() {
        let mut ids = Vec::new();
        for m in 0..*n {
            let id = lab.agent(&format!("P{i}"), "main", &format!("m{m}")).await;
            ids.push(id);
        }
        sites.push(ids);
    }
    let t0 = lab.now();
    for ids in &sites {
        for id in ids {
            lab.baseline(id, true, true, true, t0).await;
            lab.probe(id, EHR, "fhir", true, None).await;
            lab.probe(id, SERVER, "tcp", true, None).await;
        }
    }
    lab.run(40).await;
    let mut back: Vec<(i64, usize, Option<Vec<rounds_protocol::Observation>>)> = Vec::new();
    let mut flapping = Vec::new();
    for f in &s.faults {
        let now = lab.now();
        match f {
            Fault::InternetCut {
                site,
                secs,
                reason,
                dns_down,
            } => {
                for id in &sites[*site] {
                    lab.alive.remove(id);
                }
                let at = now + Duration::seconds(4);
                let spooled = baseline_with(true, !dns_down, false, reason, at);
                back.push((*secs, *site, Some(spooled)));
            }
            Fault::PowerCut { site, secs } => {
                for id in &sites[*site] {
                    lab.alive.remove(id);
                }
                back.push((*secs, *site, None));
            }
            Fault::LanDown { site, secs } => {
                for id in &sites[*site] {
                    lab.alive.remove(id);
                }
                let at = now + Duration::seconds(3);
                let spooled = baseline_with(false, true, false, "tcp_timeout", at);
                back.push((*secs, *site, Some(spooled)));
            }
            Fault::VendorDown { sites: which } => {
                for site in which {
                    for id in &sites[*site] {
                        lab.probe(id, EHR, "fhir", false, Some("http_status")).await;
                    }
                }
            }
            Fault::ServerDown { site } => {
                for id in &sites[*site] {
                    lab.probe(id, SERVER, "tcp", false, Some("tcp_refused")).await;
                }
            }
            Fault::MachineOff { site, machine } => {
                lab.alive.remove(&sites[*site][*machine]);
                lab.run(60).await;
            }
            Fault::MachineCutFromEhr { site, machine } => {
                lab.probe(&sites[*site][*machine], EHR, "fhir", false, Some("tcp_timeout"))
                    .await;
            }
            Fault::Flapping { site } => flapping.push(*site),
            Fault::InternetDownCollectorReachable { site } => {
                for id in &sites[*site] {
                    let at = lab.now();
                    let mut seen = baseline_with(true, true, false, "tcp_timeout", at);
                    seen.push(probe_obs(EHR, "fhir", false, Some("tcp_timeout"), at));
                    lab.observe(id, seen).await;
                }
            }
        }
    }
    // Let it play out: flapping sites flip every 5 s; cut sites come back and deliver spools.
    let mut elapsed = 0;
    while elapsed < 300 {
        for site in &flapping {
            for id in &sites[*site] {
                lab.probe(id, SERVER, "tcp", (elapsed / 5) % 2 == 1, Some("tcp_timeout"))
                    .await;
            }
        }
        lab.run(5).await;
        elapsed += 5;
        for (secs, site, spooled) in &mut back {
            if *secs == elapsed {
                for id in &sites[*site] {
                    lab.alive.insert(id.clone());
                    lab.beat(id).await;
                }
                if let Some(spooled) = spooled.take() {
                    for id in &sites[*site] {
                        lab.observe(id, spooled.clone()).await;
                    }
                }
            }
        }
    }
    let given = lab
        .incidents()
        .await
        .into_iter()
        .filter(|i| i.parent_id.is_none())
        .map(|i| (i.source, i.cause_kind))
        .collect();
    Outcome {
        given,
        notifications: lab
            .notifier
            .log()
            .iter()
            .filter(|(_, k, _)| *k == rounds_collector::notify::NotificationKind::Opened)
            .count(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probable_cause_is_right_in_at_least_95_percent_of_injected_faults() {
    let all = scenarios();
    assert!(all.len() >= 40, "{} scenarios", all.len());
    let mut table = String::from(
        "| # | scenario | expected | given | opened notifications | right |\n| --- | --- | --- | --- | --- | --- |\n",
    );
    let mut right = 0;
    // Scenarios run side by side (each on its own store), 8 at a time.
    let all = std::sync::Arc::new(all);
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(8));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..all.len() {
        let (all, gate) = (all.clone(), gate.clone());
        tasks.spawn(async move {
            let _permit = gate.acquire().await.unwrap();
            (i, play(&all[i]).await)
        });
    }
    let mut outcomes: Vec<Option<Outcome>> = (0..all.len()).map(|_| None).collect();
    while let Some(done) = tasks.join_next().await {
        let (i, out) = done.unwrap();
        outcomes[i] = Some(out);
    }
    for (i, (s, out)) in all.iter().zip(outcomes).enumerate() {
        let out = out.unwrap();
        let expect: BTreeSet<(String, CauseKind)> = s.expect.iter().map(|(src, c)| (src.to_string(), *c)).collect();
        let ok = out.given == expect;
        right += usize::from(ok);
        let show = |set: &BTreeSet<(String, CauseKind)>| {
            set.iter()
                .map(|(s, c)| format!("{s}: {}", c.as_str()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        table.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            i + 1,
            s.name,
            show(&expect),
            show(&out.given),
            out.notifications,
            if ok { "yes" } else { "no" }
        ));
    }
    let pct = 100.0 * right as f64 / all.len() as f64;
    table.push_str(&format!("\n{right} of {} right ({pct:.1}%)\n", all.len()));
    println!("{table}");
    if let Some(file) = std::env::var_os("ALERT_HARNESS_TABLE") {
        std::fs::write(file, &table).unwrap();
    }
    assert!(pct >= 95.0, "{table}");
}
