//! Shared pieces of the benchmark (`make bench`) and the hostile-conditions suite (`make hostile`): a world to
//! measure in (sandbox + the real handlers behind the local router), a driven clock, a fault-injecting store, log
//! capture, CPU readings, a Lambda Runtime API emulator, and the printed tables.

pub mod clock;
pub mod cpu;
pub mod faulty;
pub mod figures;
pub mod fleet;
pub mod hostile;
pub mod lambda_emu;
pub mod logs;
pub mod rng;
pub mod table;
pub mod world;
