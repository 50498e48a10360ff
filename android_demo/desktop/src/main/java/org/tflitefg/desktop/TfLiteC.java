package org.tflitefg.desktop;

import com.sun.jna.Library;
import com.sun.jna.Native;
import com.sun.jna.Pointer;
import com.sun.jna.Structure;

/** The part of the TensorFlow Lite C API (tensorflow/lite/core/c/c_api.h) the desktop runner uses, via JNA. */
public interface TfLiteC extends Library {
    int OK = 0;

    /** TfLiteQuantizationParams, returned by value: real = scale * (q - zero_point). */
    @Structure.FieldOrder({"scale", "zero_point"})
    class QuantizationParams extends Structure implements Structure.ByValue {
        public float scale;
        public int zero_point;
    }

    static TfLiteC load(String path) {
        return Native.load(path, TfLiteC.class);
    }

    String TfLiteVersion();

    Pointer TfLiteModelCreateFromFile(String path);

    void TfLiteModelDelete(Pointer model);

    Pointer TfLiteInterpreterOptionsCreate();

    void TfLiteInterpreterOptionsSetNumThreads(Pointer options, int threads);

    void TfLiteInterpreterOptionsDelete(Pointer options);

    Pointer TfLiteInterpreterCreate(Pointer model, Pointer options);

    void TfLiteInterpreterDelete(Pointer interpreter);

    Pointer TfLiteInterpreterGetSignatureRunner(Pointer interpreter, String key);

    long TfLiteSignatureRunnerGetInputCount(Pointer runner);

    String TfLiteSignatureRunnerGetInputName(Pointer runner, int index);

    long TfLiteSignatureRunnerGetOutputCount(Pointer runner);

    String TfLiteSignatureRunnerGetOutputName(Pointer runner, int index);

    int TfLiteSignatureRunnerResizeInputTensor(Pointer runner, String input, int[] dims, int ndims);

    int TfLiteSignatureRunnerAllocateTensors(Pointer runner);

    Pointer TfLiteSignatureRunnerGetInputTensor(Pointer runner, String input);

    int TfLiteSignatureRunnerInvoke(Pointer runner);

    Pointer TfLiteSignatureRunnerGetOutputTensor(Pointer runner, String output);

    void TfLiteSignatureRunnerDelete(Pointer runner);

    long TfLiteTensorByteSize(Pointer tensor);

    int TfLiteTensorNumDims(Pointer tensor);

    int TfLiteTensorDim(Pointer tensor, int index);

    QuantizationParams TfLiteTensorQuantizationParams(Pointer tensor);

    int TfLiteTensorCopyFromBuffer(Pointer tensor, byte[] data, long size);

    int TfLiteTensorCopyToBuffer(Pointer tensor, byte[] data, long size);
}
