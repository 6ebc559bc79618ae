module vmrr

go 1.26.8

require (
	github.com/bobuhiro11/gokvm v0.0.8-0.20231003020000-f53faca69d28
	github.com/creack/pty v1.1.24
	github.com/go-delve/liner v1.2.2-1
	github.com/golang/snappy v1.0.0
	golang.org/x/arch v0.32.0
	golang.org/x/sys v0.50.0
)

require github.com/mattn/go-runewidth v0.0.3 // indirect
