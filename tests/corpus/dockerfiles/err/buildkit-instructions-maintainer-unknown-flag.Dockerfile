FROM alpine:3.20
MAINTAINER --boo joe@example.com
