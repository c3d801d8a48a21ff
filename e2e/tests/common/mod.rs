//! What the tests of how a platform team meets the engine share (`settings.rs`, `k8s.rs`).

use std::collections::BTreeMap;

use platform::settings::Setting;

/// Every declaration of every binary, with the services that read it.
pub fn declarations() -> BTreeMap<&'static str, (&'static Setting, Vec<&'static str>)> {
    let mut all: BTreeMap<&'static str, (&'static Setting, Vec<&'static str>)> = BTreeMap::new();
    let services: [(&str, Vec<&'static [&'static Setting]>); 4] = [
        ("communication", communication::settings::declared()),
        ("gateway", gateway::declared()),
        ("workflow", workflow::settings::declared()),
        ("afc-emulator", vec![workflow::settings::EMULATOR]),
    ];
    for (service, lists) in services {
        for s in lists
            .into_iter()
            .flatten()
            .copied()
            .chain([&platform::settings::PROFILE])
        {
            let entry = all.entry(s.name).or_insert((s, Vec::new()));
            assert!(
                std::ptr::eq(entry.0, s),
                "{} is declared twice (two `Setting`s of the same name)",
                s.name
            );
            if !entry.1.contains(&service) {
                entry.1.push(service);
            }
        }
    }
    all
}
