.PHONY: demo test unit
demo:
	./hack/demo
test:
	./hack/test
unit:
	./hack/unit
