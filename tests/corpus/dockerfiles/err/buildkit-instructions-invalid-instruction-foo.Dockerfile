FROM alpine:3.20
foo bar
