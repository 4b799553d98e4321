namespace Peft;

/// <summary>
/// Freezes a member (its whole module subtree or parameter) or, on a class, every instance of that module.
/// Frozen parameters get <c>requires_grad = false</c> and are never given to an optimizer.
/// </summary>
/// <remarks>When a model declares any adapter, everything that is neither an adapter nor marked
/// <see cref="TrainableAttribute"/> is frozen anyway; <c>[Freeze]</c> states it explicitly and also wins inside a
/// <see cref="TrainableAttribute"/> subtree.</remarks>
[AttributeUsage(AttributeTargets.Field | AttributeTargets.Property | AttributeTargets.Class, AllowMultiple = false, Inherited = false)]
public sealed class FreezeAttribute : Attribute
{
}

/// <summary>
/// Keeps a member fully trainable when adapters freeze the rest of the model (PEFT's <c>modules_to_save</c>,
/// e.g. a classification head).
/// </summary>
[AttributeUsage(AttributeTargets.Field | AttributeTargets.Property, AllowMultiple = false, Inherited = false)]
public sealed class TrainableAttribute : Attribute
{
}
