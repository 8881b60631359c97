FROM alpine:3.20
ONBUILD FROM scratch
