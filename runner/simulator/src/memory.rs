//! One executor's HBM: which model configurations are resident, least-recently-used eviction,
//! and the switching delay of loading a configuration that is not resident.
//!
//! A configuration is (model, sequence-length bucket, batch size). Its size is
//! [`ModelConfig::configuration_gb`](super::config::ModelConfig::configuration_gb); loading it
//! takes `size / load_bandwidth_gb_per_s` seconds. Each configuration is a separate HBM entry
//! (two buckets of one model are two entries). This module does no timing itself.

/// A model configuration: what HBM holds and what a switch loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConfigKey {
    /// Index of the model in the config.
    pub model: usize,
    /// Sequence-length bucket.
    pub bucket: u32,
    /// Supported batch size the batch runs at.
    pub batch_size: u32,
}

/// The HBM of one executor.
#[derive(Debug, Clone)]
pub struct Hbm {
    capacity_gb: f64,
    used_gb: f64,
    /// Resident configurations with their size and last use (a counter; larger is newer).
    resident: Vec<(ConfigKey, f64, u64)>,
    clock: u64,
}

/// What making a configuration resident cost.
#[derive(Debug, Clone, PartialEq)]
pub struct Load {
    /// GB loaded from DDR: 0 when the configuration was already resident.
    pub loaded_gb: f64,
    /// Configurations evicted to make room, oldest first.
    pub evicted: Vec<ConfigKey>,
}

impl Hbm {
    /// An empty HBM of `capacity_gb`.
    pub fn new(capacity_gb: f64) -> Self {
        Hbm {
            capacity_gb,
            used_gb: 0.0,
            resident: Vec::new(),
            clock: 0,
        }
    }

    /// Whether `key` is resident.
    pub fn is_resident(&self, key: ConfigKey) -> bool {
        self.resident.iter().any(|(k, _, _)| *k == key)
    }

    /// Marks `key` (of `size_gb`) used now, loading it first when it is not resident and
    /// evicting the least recently used configurations until it fits. Validation guarantees
    /// every configuration fits an empty HBM; one that does not is loaded anyway.
    pub fn touch(&mut self, key: ConfigKey, size_gb: f64) -> Load {
        self.clock += 1;
        let now = self.clock;
        if let Some(entry) = self.resident.iter_mut().find(|(k, _, _)| *k == key) {
            entry.2 = now;
            return Load {
                loaded_gb: 0.0,
                evicted: Vec::new(),
            };
        }
        let mut evicted = Vec::new();
        while self.used_gb + size_gb > self.capacity_gb + 1e-9 && !self.resident.is_empty() {
            let oldest = self
                .resident
                .iter()
                .enumerate()
                .min_by_key(|(_, (_, _, used))| *used)
                .map(|(i, _)| i);
            if let Some(i) = oldest {
                let (k, size, _) = self.resident.remove(i);
                self.used_gb -= size;
                evicted.push(k);
            }
        }
        self.resident.push((key, size_gb, now));
        self.used_gb += size_gb;
        Load {
            loaded_gb: size_gb,
            evicted,
        }
    }

    /// GB in use.
    pub fn used_gb(&self) -> f64 {
        self.used_gb
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(model: usize) -> ConfigKey {
        ConfigKey {
            model,
            bucket: 4096,
            batch_size: 1,
        }
    }

    #[test]
    fn resident_configurations_cost_nothing() {
        let mut hbm = Hbm::new(100.0);
        assert_eq!(hbm.touch(key(0), 60.0).loaded_gb, 60.0);
        assert_eq!(hbm.touch(key(0), 60.0).loaded_gb, 0.0);
        assert!(hbm.is_resident(key(0)));
    }

    #[test]
    fn the_least_recently_used_is_evicted_first() {
        let mut hbm = Hbm::new(100.0);
        hbm.touch(key(0), 40.0);
        hbm.touch(key(1), 40.0);
        hbm.touch(key(0), 40.0); // 1 is now the oldest
        let load = hbm.touch(key(2), 40.0);
        assert_eq!(load.evicted, vec![key(1)]);
        assert!(hbm.is_resident(key(0)) && hbm.is_resident(key(2)));
        assert!((hbm.used_gb() - 80.0).abs() < 1e-9);
    }

    #[test]
    fn alternating_models_that_do_not_fit_together_always_reload() {
        let mut hbm = Hbm::new(100.0);
        for _ in 0..3 {
            assert_eq!(hbm.touch(key(0), 70.0).loaded_gb, 70.0);
            assert_eq!(hbm.touch(key(1), 40.0).loaded_gb, 40.0);
        }
    }
}
