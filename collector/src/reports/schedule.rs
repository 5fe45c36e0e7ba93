//! Report schedules (filled below).
