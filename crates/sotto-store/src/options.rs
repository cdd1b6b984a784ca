//! How a store is opened: key derivation cost, durability, lock waiting.

use core::time::Duration;

use crate::error::{Error, Result};

/// Largest accepted Argon2id memory cost: 4 GiB, in KiB. A file that asks
/// for more is treated as corrupt rather than allowed to exhaust memory.
pub const MAX_MEMORY_KIB: u32 = 4 * 1024 * 1024;
/// Largest accepted Argon2id iteration count.
pub const MAX_ITERATIONS: u32 = 64;
/// Largest accepted Argon2id parallelism.
pub const MAX_PARALLELISM: u32 = 64;

/// Argon2id cost parameters for turning a passphrase into the key that
/// wraps the database key.
///
/// They are stored in the file, so opening always uses the parameters the
/// file was created (or last re-keyed) with; these values matter only for
/// [`Store::create`](crate::Store::create) and
/// [`Store::change_passphrase`](crate::Store::change_passphrase).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    memory_kib: u32,
    iterations: u32,
    parallelism: u32,
}

impl KdfParams {
    /// The default: m = 64 MiB, t = 3, p = 1.
    pub const DEFAULT: Self = Self {
        memory_kib: 64 * 1024,
        iterations: 3,
        parallelism: 1,
    };

    /// Custom parameters: memory in KiB, iterations, lanes.
    ///
    /// Requires `1 <= parallelism <= 64`, `8 * parallelism <= memory_kib <=
    /// 4 GiB` and `1 <= iterations <= 64`. Small values make a stolen file
    /// cheap to attack; they exist for tests and very weak devices.
    pub fn new(memory_kib: u32, iterations: u32, parallelism: u32) -> Result<Self> {
        if parallelism == 0 || parallelism > MAX_PARALLELISM {
            return Err(Error::InvalidKdfParams("parallelism must be 1..=64"));
        }
        if memory_kib < 8 * parallelism || memory_kib > MAX_MEMORY_KIB {
            return Err(Error::InvalidKdfParams(
                "memory must be between 8 KiB per lane and 4 GiB",
            ));
        }
        if iterations == 0 || iterations > MAX_ITERATIONS {
            return Err(Error::InvalidKdfParams("iterations must be 1..=64"));
        }
        Ok(Self {
            memory_kib,
            iterations,
            parallelism,
        })
    }

    /// Memory cost in KiB.
    pub fn memory_kib(&self) -> u32 {
        self.memory_kib
    }

    /// Number of passes.
    pub fn iterations(&self) -> u32 {
        self.iterations
    }

    /// Number of lanes.
    pub fn parallelism(&self) -> u32 {
        self.parallelism
    }
}

impl Default for KdfParams {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// When a committed transaction is safe from power loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Durability {
    /// `PRAGMA synchronous = FULL`: every commit is on stable storage
    /// before it returns. Needed for "acknowledge the relay only after
    /// commit" to hold across power loss. The default.
    #[default]
    Full,
    /// `PRAGMA synchronous = NORMAL`: commits survive a process crash and
    /// stay consistent, but the last ones may roll back after power loss.
    Normal,
}

/// Options for creating and opening a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenOptions {
    kdf: KdfParams,
    durability: Durability,
    busy_timeout: Duration,
}

impl OpenOptions {
    /// Defaults: [`KdfParams::DEFAULT`], [`Durability::Full`], 5 s busy timeout.
    pub fn new() -> Self {
        Self {
            kdf: KdfParams::DEFAULT,
            durability: Durability::Full,
            busy_timeout: Duration::from_secs(5),
        }
    }

    /// Argon2id parameters used when creating the file or changing the
    /// passphrase.
    pub fn kdf(mut self, kdf: KdfParams) -> Self {
        self.kdf = kdf;
        self
    }

    /// The durability of commits.
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// How long an operation waits for another handle's write lock before
    /// failing with a busy error.
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// The Argon2id parameters.
    pub fn kdf_params(&self) -> KdfParams {
        self.kdf
    }

    /// The durability setting.
    pub fn durability_mode(&self) -> Durability {
        self.durability
    }

    /// The busy timeout.
    pub fn busy_timeout_duration(&self) -> Duration {
        self.busy_timeout
    }
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self::new()
    }
}
