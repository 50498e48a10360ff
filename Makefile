# Two entry points: `make demo` and `make test`. Both create/reuse .venv and fetch the assets.
PY      ?= python3.11
VENV    := .venv
PYTHON  := $(VENV)/bin/python
STAMP   := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)

.PHONY: demo test java-test venv assets clean

$(STAMP): pyproject.toml
	@command -v $(PY) >/dev/null || { echo "needs $(PY) (set PY=...)"; exit 1; }
	test -x $(PYTHON) || $(PY) -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -e ".[convert,dev,tasks]"
	rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP)

assets: venv
	$(PYTHON) tools/fetch_assets.py

# The main job end to end on real data: convert ResNet-8 with a prototype head for Fashion-MNIST,
# train its int8 weights on-device style with Sign-m-SPSA, export, and print the result.
demo: assets
	$(PYTHON) tools/train.py --out=out/demo
	$(PYTHON) tools/evaluate.py --model=out/demo/trained.tflite

test: assets
	$(PYTHON) -m pytest -q tests

# The Java training core of android_demo/ on the JVM (JDK 17, Debian junit4): plain javac/java, no network.
JAVA_LIB   ?= /usr/share/java
JAVA_OUT   := build/java
JUNIT_CP   := $(JAVA_LIB)/junit4.jar:$(JAVA_LIB)/hamcrest-core.jar
CORE_SRC   := $(shell find android_demo/core/src/main -name '*.java' 2>/dev/null)
CORE_TESTS := $(shell find android_demo/core/src/test -name '*Test.java' 2>/dev/null)

java-test:
	@command -v javac >/dev/null && test -f $(JAVA_LIB)/junit4.jar || { echo "needs a JDK 17 and junit4 \
	(Debian: apt-get install openjdk-17-jdk-headless junit4 libjna-java)"; exit 1; }
	rm -rf $(JAVA_OUT) && mkdir -p $(JAVA_OUT)
	javac --release 17 -Xlint:all -Werror -d $(JAVA_OUT)/core $(CORE_SRC)
	javac --release 17 -Xlint:all -Werror -cp $(JAVA_OUT)/core:$(JUNIT_CP) -d $(JAVA_OUT)/core-test \
		$(shell find android_demo/core/src/test -name '*.java')
	java -Dgolden.dir=tests/golden -cp $(JAVA_OUT)/core:$(JAVA_OUT)/core-test:$(JUNIT_CP) org.junit.runner.JUnitCore \
		$(subst /,.,$(patsubst android_demo/core/src/test/java/%.java,%,$(CORE_TESTS)))

clean:
	rm -rf out .pytest_cache $(JAVA_OUT)
