//! Table tests of the supervisor machine (filled below).
