//! The benchmark (`make bench`): each module measures one group of figures and adds its rows to the table.

pub mod attachments;
pub mod batch;
pub mod calls;
pub mod cold_start;
pub mod fleet;
pub mod month_end;
pub mod overhead;
