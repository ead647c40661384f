package joinnode

import (
	"encoding/base64"
	"encoding/pem"
)

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func mustDER(p []byte) []byte {
	block, _ := pem.Decode(p)
	return block.Bytes
}
