FROM alpine:3.20
COPY	
		quux \
      bar
