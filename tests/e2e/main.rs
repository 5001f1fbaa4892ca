//! End-to-end tests against real services. One test binary, so that it links once and shares
//! one broker and one database server.

mod api;
mod dashboard;
mod faults;
mod hostile;
mod pipeline;
mod publisher;
mod pvt;
mod review;
mod simulator;
mod smoke;
mod store;
mod worker;
