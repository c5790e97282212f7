//! Settings for a part this build of the agent lacks (`crate::features`): each is warned
//! about once at load, naming the feature, and then ignored. Not an error: one configuration
//! serves every image of a product line, and an A/B rollback may boot a smaller build with a
//! newer file.

use super::AgentConfig;
use crate::features::Feature;

/// The settings `cfg` sets (in the file, the environment or by flag) that belong to
/// `feature`, named as in the file.
pub fn settings_of(feature: Feature, cfg: &AgentConfig) -> Vec<&'static str> {
    match feature {
        Feature::Mqtt => [
            ("mqtt_url", cfg.mqtt_url.is_some()),
            ("mqtt_ca", cfg.mqtt_ca.is_some()),
            ("telemetry_interval", cfg.telemetry_interval.is_some()),
        ]
        .into_iter()
        .filter(|(_, set)| *set)
        .map(|(key, _)| key)
        .collect(),
        Feature::Ota => cfg.hawkbit.keys_set(),
    }
}

/// The settings of features this build lacks, by feature.
pub fn ignored(cfg: &AgentConfig) -> Vec<(Feature, Vec<&'static str>)> {
    Feature::ALL
        .into_iter()
        .filter(|f| !f.enabled())
        .map(|f| (f, settings_of(f, cfg)))
        .filter(|(_, keys)| !keys.is_empty())
        .collect()
}

/// Logs one warning per missing feature whose settings `cfg` sets.
pub fn warn(cfg: &AgentConfig) {
    for (feature, keys) in ignored(cfg) {
        tracing::warn!(
            feature = feature.name(),
            settings = %keys.join(", "),
            file = %cfg.file_path.display(),
            "{}: these settings (from the file, the environment or flags) are ignored",
            feature.missing()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Overrides;
    use crate::hawkbit::config::HawkbitFile;
    use std::path::Path;

    #[test]
    fn the_settings_of_each_feature_are_named_and_only_missing_ones_reported() {
        let cfg = AgentConfig::load(
            Path::new("/nonexistent"),
            false,
            Overrides {
                mqtt_url: Some("mqtts://broker.example".into()),
                telemetry_interval: Some("30s".into()),
                hawkbit: HawkbitFile {
                    url: Some("https://hawkbit.example".into()),
                    after_install: Some("report".into()),
                    ..HawkbitFile::default()
                },
                ..Overrides::default()
            },
        )
        .unwrap();
        assert_eq!(
            settings_of(Feature::Mqtt, &cfg),
            ["mqtt_url", "telemetry_interval"]
        );
        assert_eq!(
            settings_of(Feature::Ota, &cfg),
            ["hawkbit.url", "hawkbit.after_install"]
        );
        let reported: Vec<Feature> = ignored(&cfg).into_iter().map(|(f, _)| f).collect();
        let missing: Vec<Feature> = Feature::ALL.into_iter().filter(|f| !f.enabled()).collect();
        assert_eq!(reported, missing);

        let plain = AgentConfig::load(Path::new("/nonexistent"), false, Overrides::default());
        assert!(ignored(&plain.unwrap()).is_empty());
    }
}
