namespace Peft;

/// <summary>
/// Implemented by a model whose base checkpoint stores some linear layers as <c>[in, out]</c> (Hugging Face's
/// <c>Conv1D</c>, as in GPT-2) and which transposes them into <c>nn.Linear</c> layout when it loads. PEFT marks LoRA
/// adapters on such layers <c>fan_in_fan_out: true</c>; the adapter tensors (<c>lora_A</c> [r, in], <c>lora_B</c>
/// [out, r]) are the same either way, so <see cref="Serialization.AdapterFiles"/> writes the flag for these layers and
/// accepts it on load only where this interface says the layer is one of them.
/// </summary>
public interface IFanInFanOutLayers
{
    /// <summary>True when the layer at <paramref name="layerPath"/> (a module path relative to the model, e.g.
    /// <c>transformer.h.0.attn.c_attn</c>) is stored <c>[in, out]</c> in the model's checkpoints.</summary>
    /// <param name="layerPath">The dotted module path of a linear layer.</param>
    bool IsFanInFanOut(string layerPath);
}
