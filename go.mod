module vmrr

go 1.26.8

require (
	github.com/alecthomas/kong v0.8.0 // indirect
	github.com/bobuhiro11/gokvm v0.0.8-0.20231003020000-f53faca69d28 // indirect
	github.com/creack/pty v1.1.24 // indirect
	github.com/go-delve/liner v1.2.2-1 // indirect
	github.com/golang/snappy v1.0.0 // indirect
	github.com/mattn/go-runewidth v0.0.3 // indirect
	golang.org/x/arch v0.32.0 // indirect
	golang.org/x/sys v0.50.0 // indirect
)
