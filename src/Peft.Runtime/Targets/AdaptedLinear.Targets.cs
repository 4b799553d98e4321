namespace Peft;

public sealed partial class AdaptedLinear
{
    /// <summary>Adds a LoRA or Kronecker adapter described by <paramref name="options"/> (configuration targeting uses this).</summary>
    /// <param name="adapterName">The adapter name, unique on this layer.</param>
    /// <param name="options">A <see cref="LoRAOptions"/> or <see cref="KroneckerOptions"/>.</param>
    /// <returns>This layer.</returns>
    /// <exception cref="PeftConfigurationException">The name is taken or invalid, the options do not fit the layer, or
    /// they are not linear-layer options.</exception>
    public AdaptedLinear WithAdapter(string adapterName, PeftAdapterOptions options) => options switch
    {
        LoRAOptions lora => WithLoRA(adapterName, lora),
        KroneckerOptions kron => WithKronecker(adapterName, kron),
        null => throw new ArgumentNullException(nameof(options)),
        _ => throw new PeftConfigurationException(
            $"Member '{MemberName}' is a linear layer; {options.Method} adapters do not apply to it (LoRA and Kronecker do).", MemberName, adapterName),
    };
}
