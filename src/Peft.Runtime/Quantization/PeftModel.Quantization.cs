using static TorchSharp.torch;

namespace Peft;

/// <summary>What <see cref="PeftModelQuantization.QuantizeBase"/> did.</summary>
/// <param name="Layers">The linear layers whose weight is now quantized.</param>
/// <param name="DenseBytes">Their dense weights' bytes before.</param>
/// <param name="QuantizedBytes">Their quantized weights' bytes.</param>
/// <param name="Skipped">Linear layers left dense because their weight trains (path and reason).</param>
public sealed record QuantizationSummary(int Layers, long DenseBytes, long QuantizedBytes, IReadOnlyList<string> Skipped)
{
    /// <summary>Quantized bytes over dense bytes (0 when nothing was quantized).</summary>
    public double Ratio => DenseBytes == 0 ? 0 : (double)QuantizedBytes / DenseBytes;
}

/// <summary>QLoRA's frozen base: model-level quantization of the adapted linear layers' weights.</summary>
public static class PeftModelQuantization
{
    /// <summary>
    /// Quantizes the frozen weight of every wrapped linear layer of <paramref name="model"/> (<see cref="AdaptedLinear.QuantizeBase"/>):
    /// apply the adapters first (by attributes or <c>ApplyTargets</c>), so that the layers are wrapped and the base is frozen.
    /// Layers whose weight trains (<c>[Trainable]</c>) stay dense and are listed in <see cref="QuantizationSummary.Skipped"/>.
    /// </summary>
    /// <param name="model">The model.</param>
    /// <param name="format">The storage format.</param>
    /// <returns>What was quantized and the bytes before and after.</returns>
    /// <exception cref="PeftConfigurationException">A layer cannot be quantized (a merged adapter, DoRA or HiRA live); nothing
    /// after it is quantized, layers before it stay quantized (<see cref="DequantizeBase"/> undoes them).</exception>
    public static QuantizationSummary QuantizeBase(this nn.Module model, QuantizationFormat format)
    {
        ArgumentNullException.ThrowIfNull(model);
        int layers = 0;
        long dense = 0, quantized = 0;
        var skipped = new List<string>();
        foreach (var (path, layer) in ModuleTree.Layers(model))
        {
            if (layer is not AdaptedLinear linear || linear.QuantizedBase is not null)
            {
                continue;
            }

            if (linear.Weight.requires_grad)
            {
                skipped.Add($"{path}: its weight trains");
                continue;
            }

            long before = linear.Weight.numel() * linear.Weight.ElementSize;
            quantized += linear.QuantizeBase(format);
            dense += before;
            layers++;
        }

        return new QuantizationSummary(layers, dense, quantized, skipped);
    }

    /// <summary>Turns every quantized base weight back into a dense frozen weight (<see cref="AdaptedLinear.DequantizeBase"/>),
    /// e.g. before <c>Merge()</c> to export a dense checkpoint.</summary>
    /// <param name="model">The model.</param>
    /// <returns>The number of layers dequantized.</returns>
    public static int DequantizeBase(this nn.Module model)
    {
        ArgumentNullException.ThrowIfNull(model);
        return ModuleTree.Layers(model).Count(l => l.Layer is AdaptedLinear linear && linear.DequantizeBase());
    }
}
