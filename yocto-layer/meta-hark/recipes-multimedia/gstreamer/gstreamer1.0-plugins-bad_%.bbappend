# harkd's WHEP listening (a browser plays a stream over WebRTC) needs webrtcbin,
# which oe-core builds only with PACKAGECONFIG "webrtc" (libnice, from meta-oe),
# and SRTP for its media ("dtls" is on by default).
PACKAGECONFIG:append = " srtp webrtc"
