module certgate.dev/bench

go 1.22
